"""The stacked engine (``pack_engine: stacked``): a pack's runs trained side by side as one vmapped
network. Each run's step is its own job's step (same loss, gradients and BatchNorm statistics, to
float rounding); a stacked pack writes every run's usual files, resumes bit for bit, keeps a
diverging run from stopping the others, refuses what it cannot train, and checks memory first."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import small_training_task
from neurobias import stacked
from neurobias.checkpoint import CHECKPOINT_NAME
from neurobias.packed import PackedRun, PackFailure, train_runs
from neurobias.regularisers import build_regulariser
from neurobias.stacking_rules import stack_key, unsupported_reason
from neurobias.train import NonFiniteLossError, TrainingConfig, batchnorm_layers, regularised_loss

CFG = TrainingConfig(epochs=2, batch_size=32, lr=0.05, crop_padding=2, flip=True, precision="fp32")
RESNET = {"architecture": "resnet18", "width": 4}
CORNET = {"architecture": "cornet_z", "width": 8}


@pytest.fixture(scope="module")
def task():
    return small_training_task(128)[0]


# Every kind of arm the stacked engine trains, with the options that change its step.
ARMS = {
    "none": ({"regulariser": "none"}, {}),
    "similarity": ({"regulariser": "similarity", "alpha": 2.0, "layers": ["layer1", "layer2"],
                    "stimulus_batch_size": 8, "neural_batchnorm": "update"}, {}),
    "similarity_freeze": ({"regulariser": "similarity", "alpha": 2.0, "layers": ["layer2"],
                           "stimulus_batch_size": 8, "neural_batchnorm": "freeze"}, {}),
    "rsm": ({"regulariser": "rsm", "r": 0.5, "layer": "layer2", "stimulus_batch_size": 8, "alternate": False,
             "neural_batchnorm": "update"}, {"rsm_metric": "cosine"}),
}


def one_step_alone_and_stacked(arm, context, target, n=3):
    """One training step of ``n`` runs (each its own seed, batch and stimulus rows), computed by
    the one-model loss on each run alone and by the stack: (alone, stacked) per-run results."""
    from neurobias.models import build_classifier
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 16, 3, 32, 32, generator=g)
    y = torch.randint(0, 5, (n, 16), generator=g)
    stimuli = torch.rand(80, 3, 32, 32, generator=g)
    rows = torch.stack([torch.randperm(60, generator=g)[:8][None] for _ in range(n)])
    nets, regs = [], []
    for seed in range(n):
        torch.manual_seed(seed)
        nets.append(build_classifier("resnet18", 5, 3, torch.zeros(3), torch.ones(3), width=4).train())
        regs.append(build_regulariser(arm, target, np.arange(60), {**context, "seed": seed}))
    alone = []
    for i, (net, reg) in enumerate(zip(copy.deepcopy(nets), copy.deepcopy(regs))):
        stim_rows = list(rows[i]) if reg is not None else []
        loss, ce, penalty, logits = regularised_loss(net, reg, batchnorm_layers(net), x[i], y[i], stim_rows, stimuli,
                                                     torch.device("cpu"), "fp32")
        loss.backward()
        grads = {f"net.{k}": p.grad for k, p in net.named_parameters()}
        if reg is not None:
            grads.update({f"reg.{k}": p.grad for k, p in reg.named_parameters()})
        alone.append({"loss": loss.detach(), "penalty": penalty.detach(), "logits": logits.detach(), "grads": grads,
                      "buffers": {f"net.{k}": b.clone() for k, b in net.named_buffers()}})
    runs = [stacked._Run(i, None, None, net, reg, None, [], None, {}) for i, (net, reg) in enumerate(zip(nets, regs))]
    stack = stacked.Stack(runs, stimuli, torch.device("cpu"), "fp32")
    no_rows = torch.zeros(n, 0, 0, dtype=torch.long)
    loss, ce, penalty, logits = stack.step(x, y, rows if regs[0] is not None else no_rows)
    together = [{"loss": loss[i], "penalty": penalty[i], "logits": logits[i],
                 "grads": {k: p.grad[i] for k, p in stack.params.items()},
                 # each run's own network reads the stack: its statistics are the stacked ones
                 "buffers": {f"net.{k}": b for k, b in nets[i].named_buffers()}} for i in range(n)]
    return alone, together


@pytest.mark.parametrize("kind", sorted(ARMS))
def test_one_stacked_step_is_each_run_s_own_step(kind):
    arm, context = ARMS[kind]
    target = None if arm["regulariser"] == "none" else np.corrcoef(np.random.default_rng(1).normal(size=(80, 30)))
    alone, together = one_step_alone_and_stacked(arm, context, target)
    for a, t in zip(alone, together):
        # measured: losses to 5e-7, gradients to 3e-5 of their largest element (a grouped convolution
        # sums in another order)
        assert torch.allclose(a["loss"], t["loss"], rtol=1e-5, atol=1e-6)
        assert torch.allclose(a["logits"], t["logits"], rtol=1e-4, atol=1e-5)
        if kind != "none":
            assert float(a["penalty"]) > 0 and torch.allclose(a["penalty"], t["penalty"], rtol=1e-4, atol=1e-6)
        assert a["grads"].keys() == t["grads"].keys()
        for name in a["grads"]:
            scale = float(a["grads"][name].abs().max()) + 1e-8
            assert float((a["grads"][name] - t["grads"][name]).abs().max()) <= 1e-4 * scale + 1e-6, name
        for name, value in a["buffers"].items():  # BatchNorm's running statistics, as alone
            assert torch.allclose(value.float(), t["buffers"][name].float(), rtol=1e-5, atol=1e-6), name
    # the runs are different networks with different gradients: nothing leaked between them
    fc = [t["grads"]["net.backbone.fc.weight"] for t in together[:2]]
    assert not torch.allclose(*fc)


def runs_of(arm, model_cfg, target, out, seeds=(3, 4, 5), context=None, label_noise=None):
    arm = {**arm, **({"label_noise": label_noise} if label_noise else {})}
    return [PackedRun(arm=arm, model_cfg=model_cfg, seed=s, target=target, context=dict(context or {}),
                      out_dir=out / f"seed{s}") for s in seeds]


SIMILARITY = {"regulariser": "similarity", "alpha": 1.0, "layers": ["V1", "V2"], "stimulus_batch_size": 8}


def prepared_stimuli(task):
    from neurobias.train import stimuli_as_inputs
    images = task["train"][0]
    return stimuli_as_inputs(task["stimuli"], images.shape[1], images.shape[-1])


def model_bytes(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_a_stacked_pack_writes_every_run_s_files_reproducibly_and_resumes_bit_for_bit(task, tmp_path):
    target = task["diagnostic_target"]
    finished = []
    train_runs(runs_of(SIMILARITY, CORNET, target, tmp_path / "a"), training=CFG, device="cpu", progress=False,
               engine="stacked", on_finished=lambda k, started: finished.append(k), **task)
    assert sorted(finished) == [0, 1, 2]
    assert not list((tmp_path / "a").glob(f"*/{CHECKPOINT_NAME}"))
    histories = [pd.read_csv(tmp_path / "a" / f"seed{s}" / "history.csv") for s in (3, 4, 5)]
    for h in histories:
        assert list(h["epoch"]) == [1, 2] and (h["train_similarity_loss"] > 0).all()
        assert {"gamma_V1", "gamma_V2", "heldout_similarity_r", "val_accuracy"} <= set(h.columns)
    assert histories[0]["train_loss"].iloc[0] != histories[1]["train_loss"].iloc[0]  # own seeds, own data order
    # model.pt holds the run's own weights, not its stack's storage: the size of a one-model file
    single = sum(v.numel() * v.element_size() for v in model_bytes(tmp_path / "a" / "seed3" / "model.pt").values())
    assert (tmp_path / "a" / "seed3" / "model.pt").stat().st_size < 1.5 * single

    # the same stack again, killed after epoch 1 and resumed: the same files, bit for bit
    from neurobias.stacked import train_stacked
    killed = runs_of(SIMILARITY, CORNET, target, tmp_path / "b")
    train_stacked(killed, training=CFG, device="cpu", progress=False, stop_after_epoch=1, **task)
    assert all((run.out_dir / CHECKPOINT_NAME).exists() and not (run.out_dir / "model.pt").exists() for run in killed)
    # a checkpoint holds its run's weights and momentum, not its stack's storage
    assert (killed[0].out_dir / CHECKPOINT_NAME).stat().st_size < 3 * single
    train_runs(killed, training=CFG, device="cpu", progress=False, engine="stacked", **task)
    for s in (3, 4, 5):
        a, b = tmp_path / "a" / f"seed{s}", tmp_path / "b" / f"seed{s}"
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
        x, y = model_bytes(a / "model.pt"), model_bytes(b / "model.pt")
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_stacked_run_follows_its_own_job_to_float_rounding(task, tmp_path):
    """Without BatchNorm and at a small rate, training does not amplify the kernels' rounding
    much: each stacked run's weights and history stay within 1e-5 of its one-model job's (NCHW,
    fp32) after two epochs (measured: weights to 3e-8, history to 2.4e-7). With BatchNorm and a
    large rate, the same rounding grows within an epoch to what a change of memory format gives
    (docs/performance.md)."""
    from dataclasses import replace
    from neurobias.train import train_arm
    # Federer's per-epoch test metrics and Safarani's rotation too
    gentle = replace(CFG, lr=0.01, channels_last=False, track_test=True, rotation=10.0)
    arm = {"regulariser": "rsm", "r": 0.5, "layer": "V2", "stimulus_batch_size": 8}
    runs = runs_of(arm, CORNET, task["diagnostic_target"], tmp_path / "stacked", context={"rsm_metric": "cosine"},
                   label_noise=0.2)
    train_runs(runs, training=gentle, device="cpu", progress=False, engine="stacked", **task)
    for run in runs:
        alone_dir = tmp_path / "alone" / run.out_dir.name
        train_arm(arm=run.arm, model_cfg=run.model_cfg, training=gentle, seed=run.seed, target=run.target,
                  device="cpu", out_dir=alone_dir, progress=False, context=run.context, **task)
        h, h_alone = pd.read_csv(run.out_dir / "history.csv"), pd.read_csv(alone_dir / "history.csv")
        numeric = [c for c in h.columns if c != "epoch"]
        assert "generalisation_error" in numeric and list(h.columns) == list(h_alone.columns)
        x, y = model_bytes(run.out_dir / "model.pt"), model_bytes(alone_dir / "model.pt")
        assert np.allclose(h[numeric], h_alone[numeric], rtol=1e-5, atol=1e-5)
        assert max(float((x[k].float() - y[k].float()).abs().max()) for k in x) < 1e-5


def test_a_diverging_run_fails_alone_naming_its_epoch_and_term_while_the_others_are_written(task, tmp_path):
    arm = {"regulariser": "similarity", "alpha": 1.0, "layers": ["V2"], "stimulus_batch_size": 8}
    good = task["diagnostic_target"]
    bad = good.copy()
    bad[:] = np.nan  # this run's target makes its similarity loss NaN from the first step
    runs = [PackedRun(arm=arm, model_cfg=CORNET, seed=s, target=t, out_dir=tmp_path / f"seed{s}")
            for s, t in ((0, good), (1, bad), (2, good))]
    one_epoch = TrainingConfig(epochs=1, batch_size=32, lr=0.05, precision="fp32")
    with pytest.raises(PackFailure) as failure:
        train_runs(runs, training=one_epoch, device="cpu", progress=False, engine="stacked", **task)
    [(failed_dir, error)] = failure.value.failed
    assert failed_dir == tmp_path / "seed1"
    assert isinstance(error, NonFiniteLossError) and error.epoch == 1 and error.term == "similarity loss"
    assert (tmp_path / "seed0" / "model.pt").exists() and (tmp_path / "seed2" / "model.pt").exists()
    assert not (tmp_path / "seed1" / "model.pt").exists() and not (tmp_path / "seed1" / CHECKPOINT_NAME).exists()
    assert (tmp_path / "seed0" / CHECKPOINT_NAME).exists()  # kept until a rerun writes the whole pack
    assert np.isfinite(pd.read_csv(tmp_path / "seed0" / "history.csv")["train_loss"]).all()


@pytest.mark.parametrize("arm, model, training, field", [
    ({"regulariser": "mtl", "layer": "V1"}, CORNET, {}, "regulariser 'mtl'"),
    ({"regulariser": "oracle", "layer": "V1"}, CORNET, {}, "regulariser 'oracle'"),
    ({"regulariser": "none"}, {**RESNET, "vone": True}, {}, "model.vone"),
    ({"regulariser": "none"}, {"architecture": "vgg11", "width": 8, "batch_norm": True}, {},
     "model.architecture 'vgg11'"),
    ({"regulariser": "none"}, CORNET, {"lr_schedule": {"kind": "plateau"}}, "training.lr_schedule.kind 'plateau'"),
])
def test_what_the_stacked_engine_cannot_train_is_refused_naming_the_field(arm, model, training, field, task, tmp_path):
    assert field in unsupported_reason(arm, model, training)
    assert unsupported_reason({"regulariser": "similarity"}, CORNET, {"lr_schedule": {"kind": "cosine"}}) is None
    if arm["regulariser"] == "none" and "lr_schedule" not in training:  # and before any work in a job
        run = PackedRun(arm=arm, model_cfg=model, seed=0, target=None, out_dir=tmp_path / "run")
        with pytest.raises(ValueError, match="pack_engine: sequential"):
            train_runs([run], training=CFG, device="cpu", progress=False, engine="stacked", **task)
        assert not (tmp_path / "run" / "model.pt").exists()


def test_runs_stack_when_they_differ_only_in_data():
    arm = {"regulariser": "similarity", "alpha": 1.0, "layers": ["V2"], "target": "model"}
    assert stack_key(arm) == stack_key({**arm, "target": "shuffle", "label_noise": 0.2})
    assert stack_key(arm) != stack_key({**arm, "alpha": 2.0})


def test_a_stack_that_does_not_fit_stops_before_training_naming_the_number_that_fits(task, tmp_path, monkeypatch):
    runs = runs_of(SIMILARITY, CORNET, task["diagnostic_target"], tmp_path / "pack", seeds=(0, 1, 2, 3, 4))
    # the plan of this stack on this machine, then a device with room for exactly two runs
    stimuli = prepared_stimuli(task)
    prepared = stacked._prepare(0, runs[0], CFG, torch.device("cpu"), task, stimuli)
    plan = stacked.memory_plan(prepared, stacked.ProbeStep.of(prepared, stimuli, CFG, "cpu"), CFG, "cpu", "fp32")
    assert plan.per_run_bytes > sum(p.numel() * 4 * 4 for p in prepared.model.parameters())  # + activations
    free = int((plan.shared_bytes + 2.5 * plan.per_run_bytes) / stacked.MEMORY_HEADROOM)
    monkeypatch.setattr(stacked, "available_memory", lambda device: free)
    with pytest.raises(stacked.PackMemoryError, match="at most 2 fit: set the study's pack to 2") as error:
        train_runs(runs, training=CFG, device="cpu", progress=False, engine="stacked", **task)
    assert "5 runs need about" in str(error.value)
    assert not list((tmp_path / "pack").glob("*/model.pt")) and not list((tmp_path / "pack").glob("*/checkpoint.pt"))
    # pack: auto splits the job's runs into stacks that fit: 5 runs -> 3 stacks (2, 2, 1)
    assert [len(s) for s in stacked.split_evenly(list(range(10)), 3)] == [4, 3, 3]
    stacks = []
    real = stacked._train_stack
    monkeypatch.setattr(stacked, "_train_stack", lambda members, *a: stacks.append(len(members)) or real(members, *a))
    one_epoch = TrainingConfig(epochs=1, batch_size=32, lr=0.05, precision="fp32")
    train_runs(runs, training=one_epoch, device="cpu", progress=False, engine="stacked", fit="split", **task)
    assert stacks == [2, 2, 1]
    for run in runs:  # every run trained its epoch
        history = pd.read_csv(run.out_dir / "history.csv")
        assert list(history["epoch"]) == [1] and np.isfinite(history["train_loss"]).all()
        assert set(model_bytes(run.out_dir / "model.pt")) == set(prepared.model.state_dict())


def test_the_memory_plan_grows_with_the_batch():
    from neurobias.models import build_classifier
    plans = []
    for batch in (16, 64):
        torch.manual_seed(0)
        net = build_classifier("resnet18", 5, 3, torch.zeros(3), torch.ones(3), width=4).train()
        run = stacked._Run(0, None, None, net, None, None, [], None, {})
        probe = stacked.ProbeStep(torch.rand(batch, 3, 32, 32), torch.randint(0, 5, (batch,)),
                                  torch.zeros(0, 0, dtype=torch.long), torch.rand(10, 3, 32, 32), 12345)
        plans.append(stacked.memory_plan(run, probe, CFG, "cpu", "fp32"))
    small, large = (p.per_run_bytes for p in plans)
    # activations dominate: four times the batch, about four times the saved tensors
    assert 2.5 * small < large < 4.5 * small
    assert plans[0].shared_bytes == 12345 and plans[0].how == "estimated"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the plan is measured by CUDA's allocator")
def test_on_a_gpu_the_memory_plan_is_measured_and_a_stack_of_the_planned_size_trains(task, tmp_path):
    device = torch.device("cuda")
    runs = runs_of(SIMILARITY, CORNET, task["diagnostic_target"], tmp_path / "pack", seeds=(0, 1))
    stimuli = prepared_stimuli(task)
    prepared = stacked._prepare(0, runs[0], CFG, device, task, stimuli)
    plan = stacked.memory_plan(prepared, stacked.ProbeStep.of(prepared, stimuli, CFG, device), CFG, device, "fp32")
    parameters = sum(p.numel() * 4 for p in prepared.model.parameters())
    assert plan.how == "measured" and plan.per_run_bytes > 4 * parameters and plan.fitting() >= 2
    train_runs(runs, training=CFG, device="cuda", progress=False, engine="stacked", **task)
    for run in runs:
        history = pd.read_csv(run.out_dir / "history.csv")
        assert list(history["epoch"]) == [1, 2] and np.isfinite(history["train_loss"]).all()


# -- the workflow ----------------------------------------------------------------------------------
def stacked_config(tmp_path, **training):
    import yaml
    from conftest import TINY
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"].update(pack="auto", pack_engine="stacked")
    config["studies"]["tiny"]["training"].update(training)
    path = tmp_path / "stacked.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


TINY_ARMS = ("none", "neural_model", "neural_data", "shuffle")  # four kinds of step: four stacks of two seeds


@pytest.mark.slow
def test_a_stacked_pack_job_killed_with_kill_9_resumes_to_the_same_files_and_the_workflow_runs_on(
        tiny_local_run, tmp_path):
    """The tiny study with pack: auto and pack_engine: stacked is one training job of 8 runs in 4
    stacks. kill -9 of snakemake and that job once the third stack has a checkpoint (the first two
    stacks written); `--unlock`, rerun: every model equals an uninterrupted stacked job's, and the
    rest of the workflow runs on the stacked models."""
    import json
    import os
    import shutil
    from conftest import dry_run_counts, kill_9_once_written, snakemake
    config = stacked_config(tmp_path, epochs=4)
    models = [f"results/train/tiny/{arm}/seed{seed}/model.pt" for arm in TINY_ARMS for seed in (0, 1)]
    runs = {}
    for name in ("uninterrupted", "killed"):
        runs[name] = tmp_path / name
        shutil.copytree(tiny_local_run, runs[name], ignore=shutil.ignore_patterns("locks"))
    counts = dry_run_counts(runs["uninterrupted"], config)
    assert {k: v for k, v in counts.items() if k.startswith("train")} == {"train_pack__tiny__0": "1"}
    r = snakemake(runs["uninterrupted"], *models, config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (runs["uninterrupted"] / "logs/train/tiny/pack0.log").read_text()
    assert log.count("stacked engine: 2 runs side by side") == 4

    work = runs["killed"]
    third = work / "results/train/tiny/neural_data/seed1/checkpoint.pt"
    kill_9_once_written(work, config, models, third)
    assert (work / "results/train/tiny/none/seed0/checkpoint.pt").exists()  # a written stack's, kept
    assert snakemake(work, "--unlock", config=config, cores=False).returncode == 0
    r = snakemake(work, *models, "--rerun-incomplete", config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in (work / "logs/train/tiny/pack0.log").read_text()
    for model in models:
        run_dir = os.path.dirname(model)
        a, b = work / run_dir, runs["uninterrupted"] / run_dir
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text(), run_dir
        x, y = model_bytes(a / "model.pt"), model_bytes(b / "model.pt")
        assert all(torch.equal(x[k], y[k]) for k in x), run_dir
        assert not (a / CHECKPOINT_NAME).exists()
        provenance = json.loads((a / "provenance.json").read_text())
        assert provenance["pack"]["engine"] == "stacked" and provenance["pack"]["runs"] == 8

    # every later rule works on the stacked models unchanged
    r = snakemake(work, config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    tests = pd.read_csv(work / "results/stats/tiny/gaussian_noise_tests.csv")
    sequential = pd.read_csv(tiny_local_run / "results/stats/tiny/gaussian_noise_tests.csv")
    assert list(tests.columns) == list(sequential.columns) and len(tests) == len(sequential)
    assert set(tests["arm"]) == set(sequential["arm"])


class Killed(Exception):
    pass


def test_a_kill_while_a_stack_saves_its_checkpoints_resumes_every_run_at_one_epoch(task, tmp_path, monkeypatch):
    """The stack's runs write their checkpoints in two phases: a kill in the first (some runs'
    next checkpoints written) resumes all of them at the previous epoch, a kill in the second (some
    already renamed) at the new one; either way every file equals an uninterrupted stack's."""
    target = task["diagnostic_target"]
    train_runs(runs_of(SIMILARITY, CORNET, target, tmp_path / "reference"), training=CFG, device="cpu",
               progress=False, engine="stacked", **task)
    real_save, real_replace = stacked.Checkpoint.save, stacked.os.replace
    calls = {"save": 0, "replace": 0}

    def save_then_die(self, *args, **kwargs):  # the second run's first next-checkpoint: phase one
        calls["save"] += 1
        if calls["save"] == 2:
            raise Killed
        return real_save(self, *args, **kwargs)

    def replace_then_die(src, dst):  # epoch 2's second rename: phase two
        calls["replace"] += 1
        if calls["replace"] == 5:
            raise Killed
        return real_replace(src, dst)

    for name, patch in (("phase1", ("save", save_then_die)), ("phase2", ("replace", replace_then_die))):
        runs = runs_of(SIMILARITY, CORNET, target, tmp_path / name)
        calls.update(save=0, replace=0)
        with monkeypatch.context() as m:
            if patch[0] == "save":
                m.setattr(stacked.Checkpoint, "save", patch[1])
            else:
                m.setattr(stacked.os, "replace", patch[1])
            with pytest.raises(Killed):
                train_runs(runs, training=CFG, device="cpu", progress=False, engine="stacked", **task)
        nexts = [run.out_dir / stacked.NEXT_CHECKPOINT_NAME for run in runs]
        assert [p.exists() for p in nexts] == ([True, False, False] if name == "phase1" else [False, True, True])
        train_runs(runs, training=CFG, device="cpu", progress=False, engine="stacked", **task)
        for run in runs:
            reference = tmp_path / "reference" / run.out_dir.name
            assert (run.out_dir / "history.csv").read_text() == (reference / "history.csv").read_text(), name
            x, y = model_bytes(run.out_dir / "model.pt"), model_bytes(reference / "model.pt")
            assert all(torch.equal(x[k], y[k]) for k in x), name
            assert not (run.out_dir / stacked.NEXT_CHECKPOINT_NAME).exists()


def test_a_network_with_dropout_is_refused_before_training(task, tmp_path, monkeypatch):
    import neurobias.train as train_module
    real = train_module.build_model

    def with_dropout(*args, **kwargs):  # a user's architecture with dropout, not one the config knows
        model = real(*args, **kwargs)
        model.backbone.dropout = torch.nn.Dropout(0.3)
        return model

    monkeypatch.setattr(train_module, "build_model", with_dropout)
    run = PackedRun(arm={"regulariser": "none"}, model_cfg=CORNET, seed=0, target=None, out_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"\['backbone.dropout'\] draw random numbers"):
        train_runs([run], training=CFG, device="cpu", progress=False, engine="stacked", **task)
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.skipif(stacked.resolve_precision("auto", "cpu") != "bf16", reason="this CPU has no native bf16")
def test_a_bf16_stacked_step_is_each_run_s_bf16_step_to_bf16_rounding():
    """BatchNorm runs in fp32 inside the stack (vmap's bf16 batch_norm fails); the step is still
    each run's own bf16 step, to the size of bf16's rounding (measured: losses to 1.5e-4 relative)."""
    from neurobias.models import build_classifier
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 16, 3, 32, 32, generator=g), torch.randint(0, 5, (2, 16), generator=g)
    nets = []
    for seed in range(2):
        torch.manual_seed(seed)
        nets.append(build_classifier("resnet18", 5, 3, torch.zeros(3), torch.ones(3), width=4).train())
    alone = [regularised_loss(net, None, batchnorm_layers(net), x[i], y[i], [], x[0], torch.device("cpu"), "bf16")[0]
             for i, net in enumerate(copy.deepcopy(nets))]
    runs = [stacked._Run(i, None, None, net, None, None, [], None, {}) for i, net in enumerate(nets)]
    loss = stacked.Stack(runs, x[0], torch.device("cpu"), "bf16").step(x, y, torch.zeros(2, 0, 0, dtype=torch.long))[0]
    assert torch.allclose(torch.stack(alone).detach(), loss.detach(), rtol=2e-3)
    assert not torch.equal(loss[0], loss[1])
