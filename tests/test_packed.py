"""Packed training (a study's ``pack``): many (arm, seed) runs in one process, each model the one
its own job would write, bit for bit, also through the workflow. How a study's runs are grouped into
packs: tests/test_rule_params.py."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import small_training_task
from neurobias.neural.similarity import neural_similarity
from neurobias.packed import PackedRun, train_runs
from neurobias.train import TrainingConfig, train_arm

CFG = TrainingConfig(epochs=2, batch_size=32, lr=0.05, crop_padding=2, flip=True)
PLATEAU = TrainingConfig(epochs=3, batch_size=32, lr=0.05, crop_padding=2, flip=True,
                         lr_schedule={"kind": "plateau", "patience": 1, "max_decays": 5})
CORNET = {"architecture": "cornet_z", "width": 8}
VONE = {"architecture": "resnet18", "width": 4, "vone": {"parameters": "v1", "simple_channels": 4, "complex_channels": 4, "bottleneck": 4}}


@pytest.fixture(scope="module")
def task():
    return small_training_task(192)


# One run of every kind of arm (and a network with a VOneBlock front end), each with its own seed.
def pack_runs(responses, out):
    similarity = neural_similarity(responses)
    runs = [({"regulariser": "none", "label_noise": 0.3}, CORNET, None, {}),
            ({"regulariser": "similarity", "alpha": 1.0, "layers": ["V1", "V2"], "stimulus_batch_size": 8},
             CORNET, similarity, {}),
            ({"regulariser": "rsm", "r": 0.5, "layer": "V2", "stimulus_batch_size": 8}, CORNET, similarity,
             {"rsm_metric": "cosine"}),
            ({"regulariser": "mtl", "target": "responses_model", "layer": "V1", "batch_ratio": 1,
              "stimulus_batch_size": 16}, CORNET, responses, {"responses": responses}),
            ({"regulariser": "oracle", "layer": "V1",
              "oracle": {"pretrain_epochs": 1, "corruptions": ["gaussian_noise", "contrast"], "groups": 2}},
             CORNET, None, {}),
            ({"regulariser": "none"}, VONE, None, {})]
    return [PackedRun(arm=arm, model_cfg=model, seed=10 + k, target=target, context=context, out_dir=out / f"run{k}")
            for k, (arm, model, target, context) in enumerate(runs)]


def assert_same_files(a, b):
    for name in ("history.csv",):
        assert (a / name).read_text() == (b / name).read_text(), name
    x, y = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    assert x["state_dict"].keys() == y["state_dict"].keys()
    assert all(torch.equal(x["state_dict"][k], y["state_dict"][k]) for k in x["state_dict"])
    assert x.get("neural_head", {}).keys() == y.get("neural_head", {}).keys()
    assert all(torch.equal(x["neural_head"][k], y["neural_head"][k]) for k in x.get("neural_head", {}))


@pytest.mark.slow
def test_a_pack_trains_every_kind_of_arm_exactly_as_alone(task, tmp_path):
    shared, responses = task
    packed = pack_runs(responses, tmp_path / "pack")
    finished = []
    train_runs(packed, training=CFG, device="cpu", progress=False,
               on_finished=lambda k, started: finished.append(k), **shared)
    assert finished == list(range(len(packed)))
    assert not list((tmp_path / "pack").glob("*/checkpoint.pt"))  # removed once the whole pack is written
    for run in reversed(pack_runs(responses, tmp_path / "alone")):  # another order: runs share no state
        train_arm(arm=run.arm, model_cfg=run.model_cfg, training=CFG, seed=run.seed, target=run.target,
                  device="cpu", out_dir=run.out_dir, progress=False, context=run.context, **shared)
    for k in range(len(packed)):
        assert_same_files(tmp_path / "pack" / f"run{k}", tmp_path / "alone" / f"run{k}")
    # the arms kept their semantics: the similarity term was trained, the MTL head saved
    history = pd.read_csv(tmp_path / "pack" / "run1" / "history.csv")
    assert (history["train_similarity_loss"] > 0).all()
    assert "neural_head" in torch.load(tmp_path / "pack" / "run3" / "model.pt", weights_only=True)


@pytest.mark.slow
def test_a_pack_killed_in_its_oracle_run_resumes_to_the_same_files(task, tmp_path, monkeypatch):
    """Every kind of arm, the plateau schedule with restore_best: four runs finished (checkpoints
    kept), the oracle killed after its first stage's epoch; the rerun rewrites the four from their
    checkpoints without training, resumes the oracle and trains the last: the same files."""
    import neurobias.packed as packed_module
    shared, responses = task
    runs = pack_runs(responses, tmp_path / "killed")
    full = pack_runs(responses, tmp_path / "full")
    train_runs(full, training=PLATEAU, device="cpu", progress=False, **shared)

    calls = []

    def killed_in_second_run(**kw):
        calls.append(kw["out_dir"])
        if len(calls) == 5:  # the oracle, killed after its first (pretraining) epoch
            train_arm(**kw, stop_after_epoch=1)
            raise KeyboardInterrupt("killed")
        return train_arm(**kw)

    monkeypatch.setattr(packed_module, "train_arm", killed_in_second_run)
    with pytest.raises(KeyboardInterrupt):
        train_runs(runs, training=PLATEAU, device="cpu", progress=False, **shared)
    assert all((r.out_dir / "checkpoint.pt").exists() for r in runs[:5])
    for run in runs[:4]:
        for name in ("model.pt", "history.csv"):  # what Snakemake deletes of a failed job
            (run.out_dir / name).unlink()
    monkeypatch.setattr(packed_module, "train_arm", train_arm)
    finished = []

    train_runs(runs, training=PLATEAU, device="cpu", progress=False,
               on_finished=lambda k, started: finished.append(k), **shared)
    assert finished == list(range(6))
    assert pd.read_csv(full[0].out_dir / "history.csv")["restored"].any()  # restore_best was exercised
    for a, b in zip(runs, full):
        assert_same_files(a.out_dir, b.out_dir)
    assert not list((tmp_path / "killed").glob("*/checkpoint.pt"))


def test_a_failing_run_does_not_stop_the_others_and_the_rerun_trains_only_it(task, tmp_path, monkeypatch):
    import neurobias.packed as packed_module
    from neurobias.train import NonFiniteLossError
    shared, responses = task
    runs = pack_runs(responses, tmp_path)[:3]
    trained = []

    def second_diverges(**kw):
        trained.append(kw["out_dir"])
        if kw["out_dir"] == runs[1].out_dir:
            raise NonFiniteLossError(1, 0, "similarity loss", float("nan"), 6)
        return train_arm(**kw)

    monkeypatch.setattr(packed_module, "train_arm", second_diverges)
    with pytest.raises(packed_module.PackFailure, match=r"1 of the pack's 3 runs failed") as failure:
        train_runs(runs, training=CFG, device="cpu", progress=False, **shared)
    assert str(runs[1].out_dir) in str(failure.value) and "similarity loss" in str(failure.value)
    assert trained == [r.out_dir for r in runs]  # the third run was still trained
    assert (runs[2].out_dir / "model.pt").exists() and (runs[2].out_dir / "checkpoint.pt").exists()

    monkeypatch.setattr(packed_module, "train_arm", train_arm)
    train_runs(runs, training=CFG, device="cpu", progress=False, **shared)
    for run in runs:
        assert (run.out_dir / "model.pt").exists() and not (run.out_dir / "checkpoint.pt").exists()


# -- the workflow ----------------------------------------------------------------------------------
def packed_config(tmp_path, pack, **training):
    import yaml
    from conftest import TINY
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"]["pack"] = pack
    config["studies"]["tiny"]["training"].update(training)
    path = tmp_path / f"pack{pack}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # the arms' order decides the packs
    return path


TINY_RUNS = [(arm, seed) for arm in ("none", "neural_model", "neural_data", "shuffle") for seed in (0, 1)]


@pytest.mark.slow
def test_packed_workflow_writes_the_same_files_as_one_job_per_model(tiny_local_run, tmp_path):
    import json
    import shutil
    from conftest import dry_run_counts, snakemake
    work = tmp_path / "work"
    shutil.copytree(tiny_local_run, work, ignore=shutil.ignore_patterns("locks"))
    config = packed_config(tmp_path, 3)
    counts = dry_run_counts(work, config)
    assert {k: v for k, v in counts.items() if k.startswith("train")} == \
        {"train_pack__tiny__0": "1", "train_pack__tiny__1": "1", "train_pack__tiny__2": "1"}
    from neurobias.jobs import JOBS, job_name
    assert all(job_name(rule) in JOBS for rule in counts if rule not in ("all", "total"))
    # one model's target builds its pack (neural_model seed 1, neural_data seeds 0 and 1), nothing else
    one = "results/train/tiny/neural_model/seed1/model.pt"
    r = snakemake(work, one, config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (work / "logs/train/tiny/pack1.log").read_text()
    assert log.count("pack: run ") == 3 and "pack: run 3/3" in log
    assert "neural_data/seed1" in log and "none/seed0" not in log
    everything = [f"results/train/tiny/{a}/seed{s}/model.pt" for a, s in TINY_RUNS]
    r = snakemake(work, *everything, config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    for arm, seed in TINY_RUNS:
        run_dir = f"results/train/tiny/{arm}/seed{seed}"
        assert_same_files(work / run_dir, tiny_local_run / run_dir)
        provenance = json.loads((work / run_dir / "provenance.json").read_text())
        assert provenance["pack"]["runs"] in (2, 3) and provenance["config"]["arm"] == arm
        assert not (work / run_dir / "checkpoint.pt").exists()
    # the rest of the workflow runs on the packed models unchanged
    r = snakemake(work, config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    tests = pd.read_csv(work / "results/stats/tiny/gaussian_noise_tests.csv")
    want = pd.read_csv(tiny_local_run / "results/stats/tiny/gaussian_noise_tests.csv")
    pd.testing.assert_frame_equal(tests, want)


@pytest.mark.slow
def test_kill_9_of_a_packed_job_resumes_every_model_to_the_same_files(tiny_local_run, tmp_path):
    """kill -9 of snakemake and its pack job once the pack's second run has a checkpoint (the
    first run finished); `--unlock`, rerun: all three models equal an uninterrupted pack's."""
    import shutil
    from conftest import kill_9_once_written, snakemake
    config = packed_config(tmp_path, 3, epochs=4)
    target = "results/train/tiny/none/seed0/model.pt"  # pack 0: none 0, none 1, neural_model 0
    pack = ["none/seed0", "none/seed1", "neural_model/seed0"]
    runs = {}
    for name in ("uninterrupted", "killed"):
        runs[name] = tmp_path / name
        shutil.copytree(tiny_local_run, runs[name], ignore=shutil.ignore_patterns("locks"))
    r = snakemake(runs["uninterrupted"], target, config=config)
    assert r.returncode == 0, r.stderr[-3000:]

    work = runs["killed"]
    second = work / "results/train/tiny/none/seed1/checkpoint.pt"
    kill_9_once_written(work, config, [target], second)
    assert (work / "results/train/tiny/none/seed0/checkpoint.pt").exists()  # the finished run's, kept
    assert snakemake(work, "--unlock", config=config, cores=False).returncode == 0
    # the finished run's files are marked incomplete: --rerun-incomplete, as both profiles set it
    r = snakemake(work, target, "--rerun-incomplete", config=config)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in (work / "logs/train/tiny/pack0.log").read_text()
    for run_dir in pack:
        assert_same_files(work / "results/train/tiny" / run_dir, runs["uninterrupted"] / "results/train/tiny" / run_dir)
        assert not (work / "results/train/tiny" / run_dir / "checkpoint.pt").exists()


def test_models_of_a_study_outside_studies_to_run_still_have_their_pack_rules(tmp_path):
    """The default config with only federer_demo to run: brain-likeness still reads the demo's
    models, whose packs must exist as rules."""
    from conftest import ROOT, snakemake
    r = snakemake(tmp_path, "-n", "--config", "studies_to_run=[federer_demo]", config=ROOT / "config.yaml",
                  cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "train_pack__demo__0" in out and "train_pack__federer_demo__0" in out


def test_the_demo_positive_control_overlay_is_the_default_demo_at_its_screened_size(tmp_path):
    """studies/overlays/demo_positive_control.yaml extends config.yaml: the default demo with 3000
    training images and a Neural(data) arm regularised like Neural(model), nothing else changed."""
    import yaml
    from conftest import ROOT, dry_run_counts
    from neurobias.config import resolve_extends, validate_config
    overlay = ROOT / "studies" / "overlays" / "demo_positive_control.yaml"
    config = yaml.safe_load(overlay.read_text())
    resolve_extends(config, ROOT)
    config = validate_config(config)
    default = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    demo, base = config["studies"]["demo"], default["studies"]["demo"]
    assert {a: v for a, v in demo["arms"].items() if a != "neural_data"} == base["arms"]
    assert demo["arms"]["neural_data"] == {**base["arms"]["neural_model"], "target": "data"}
    assert {k: v for k, v in demo.items() if k != "arms"} == {k: v for k, v in base.items() if k != "arms"}
    assert base["seeds"] == list(range(10)) and base["arms"]["neural_model"]["layers"] == ["layer3"]
    data, base_data = config["datasets"]["synthetic10"], default["datasets"]["synthetic10"]
    assert (data["n_train"], data["n_val"]) == (3000, 1000) and (base_data["n_train"], base_data["n_val"]) == (1500, 500)
    assert {k: v for k, v in data.items() if k not in ("n_train", "n_val")} == \
        {k: v for k, v in base_data.items() if k not in ("n_train", "n_val")}
    counts = dry_run_counts(tmp_path, overlay)
    assert sorted(r for r in counts if r.startswith("train")) == [f"train_pack__demo__{k}" for k in range(4)]  # 40 runs, packs of 10
