"""The training loop (neurobias.train): resume equality, checkpoint safety, schedules, augmentation,
regularised arms, per-epoch test metrics."""

import numpy as np
import pandas as pd
import pytest
import torch

from neurobias.data import CLASS_NAMES, make_synthetic_task
from neurobias.data.synthetic import make_stimulus_images
from neurobias.neural.similarity import neural_similarity
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
import neurobias.train
from neurobias.regularisers import SimilarityRegulariser
from neurobias.models.io import load_classifier
from neurobias.train import (NonFiniteLossError, StepLosses, TrainingConfig, augment, evaluation_batch_size,
                             learning_rate, learning_rate_and_stop, train_arm)
from test_federer import SUPERCLASS


@pytest.fixture(scope="module")
def task():
    s = make_synthetic_task(5, n_train=256, n_val=64, n_test=10)
    as_split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 80)
    target = neural_similarity(SimulatedV1(V1PopulationParams(n_neurons=30), 1).mean_rates(stim))
    tiers = np.array(["train"] * 60 + ["test"] * 20)
    return as_split("train"), as_split("val"), stim, tiers, target


SIM_ARM = {"regulariser": "similarity", "alpha": 1.0, "layers": ["layer1", "layer2"], "stimulus_batch_size": 8}
CFG = TrainingConfig(epochs=3, batch_size=32, lr=0.05, crop_padding=2, flip=True,
                     lr_schedule={"kind": "step", "every": 1, "factor": 0.5})


def run(task, out, arm=SIM_ARM, stop=None, cfg=CFG, seed=0):
    train, val, stim, tiers, target = task
    return train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers, target=target,
                     diagnostic_target=target, arm=arm, model_cfg={"architecture": "resnet18", "width": 4},
                     training=cfg, seed=seed, device="cpu", out_dir=out, progress=False, stop_after_epoch=stop)


def state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_killed_run_resumes_to_identical_history_and_weights(task, tmp_path):
    full = run(task, tmp_path / "full")
    partial = run(task, tmp_path / "resumed", stop=1)          # "killed" after epoch 1
    assert len(partial) == 1 and (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = run(task, tmp_path / "resumed")
    pd.testing.assert_frame_equal(full, resumed)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "history.csv"),
                                  pd.read_csv(tmp_path / "resumed" / "history.csv"))
    a, b = state(tmp_path / "full" / "model.pt"), state(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # removed once the model is final


def test_history_columns_and_learned_layer_weights(task, tmp_path):
    h = run(task, tmp_path)
    assert list(h["epoch"]) == [1, 2, 3]
    assert np.allclose(h["lr"], [0.05, 0.025, 0.0125])
    assert np.allclose(h["gamma_layer1"] + h["gamma_layer2"], 1.0)
    assert (h["train_similarity_loss"] > 0).all()
    assert h[["val_accuracy", "train_accuracy"]].apply(lambda c: c.between(0, 1).all()).all()
    assert h["heldout_similarity_r"].between(-1, 1).all()


def test_different_seeds_differ_same_seed_repeats(task, tmp_path):
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05)
    a = run(task, tmp_path / "a", cfg=cfg, seed=0)
    b = run(task, tmp_path / "b", cfg=cfg, seed=0)
    c = run(task, tmp_path / "c", cfg=cfg, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_checkpoint_of_another_configuration_is_not_resumed(task, tmp_path):
    run(task, tmp_path, stop=1)
    other = TrainingConfig(epochs=2, batch_size=32, lr=0.01)
    h = run(task, tmp_path, cfg=other, arm={"regulariser": "none"})
    assert list(h["epoch"]) == [1, 2] and np.allclose(h["lr"], 0.01)
    assert "gamma_layer1" not in h


def test_unregularised_arm_has_no_similarity_loss(task, tmp_path):
    h = run(task, tmp_path, arm={"regulariser": "none"}, cfg=TrainingConfig(epochs=1, batch_size=32))
    assert (h["train_similarity_loss"] == 0).all()
    model = load_classifier(tmp_path / "model.pt")
    x = torch.rand(4, 3, 32, 32)
    assert model(x).shape == (4, 10)


def test_li2019_step_schedule_decays_and_restarts():
    cfg = TrainingConfig(epochs=40, lr=0.1, lr_schedule={"kind": "step", "every": 4, "factor": 0.3, "restart_every": 20})
    lrs = [learning_rate(cfg, e) for e in range(40)]
    assert lrs[0] == lrs[3] == 0.1
    assert lrs[4] == pytest.approx(0.03) and lrs[8] == pytest.approx(0.009)
    assert lrs[20] == 0.1 and lrs[24] == pytest.approx(0.03)


def test_augmentation_is_a_shifted_crop_or_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = augment(x, TrainingConfig(epochs=1, crop_padding=2, flip=True), g)
    assert y.shape == x.shape
    # every output is a shifted (zero-padded), possibly mirrored copy of its input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        found = any(torch.equal(y[i], cand[:, dy:dy + 8, dx:dx + 8])
                    for cand in (padded[i], padded[i].flip(-1)) for dy in range(5) for dx in range(5))
        assert found, i
    assert not torch.equal(y, x)


def test_the_synthetic_task_is_learnable_and_not_noise_proof(tmp_path):
    """The demo task must be learnable fast on a CPU (well above the 10 % chance) and its
    accuracy must fall under pixel noise, or the noise-robustness comparison says nothing."""
    from neurobias.robustness.noise import gaussian_noise_accuracy
    s = make_synthetic_task(11, n_train=1500, n_val=200, n_test=500)
    split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 40)
    train_arm(train=split("train"), val=split("val"), stimuli=stim, stimulus_tiers=np.array(["train"] * 30 + ["test"] * 10),
              target=None, diagnostic_target=np.eye(40, dtype=np.float32), arm={"regulariser": "none"},
              model_cfg={"architecture": "resnet18", "width": 8}, training=TrainingConfig(epochs=3, batch_size=64, lr=0.05),
              seed=0, device="cpu", out_dir=tmp_path, progress=False)
    test_x, test_y = split("test")[:2]
    clean, noisy = gaussian_noise_accuracy(load_classifier(tmp_path / "model.pt"), test_x, test_y, [0.0, 0.3],
                                           seed=0, progress=False)
    assert clean["accuracy"] > 0.6
    assert noisy["accuracy"] < clean["accuracy"] - 0.1


def test_rotation_augmentation_turns_each_image_by_its_own_bounded_angle():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 33, 33)
    x[:, :, 16, 20:30] = 1.0  # a horizontal bar to the right of the centre
    y = augment(x, TrainingConfig(epochs=1, rotation=30), g)
    assert y.shape == x.shape
    ys, xs = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    w = y[:, 0]
    angle = torch.rad2deg(torch.atan2((w * ys).sum((1, 2)), (w * xs).sum((1, 2))))
    assert angle.abs().max() <= 30 + 2           # within the configured range (bilinear slack)
    assert angle.std() > 5                        # drawn per image, not one angle for the batch
    assert torch.equal(augment(x, TrainingConfig(epochs=1), torch.Generator().manual_seed(0)), x)


# -- a diverging run fails and keeps its last good checkpoint -------------------------------------------
# lr 0.05 in epoch 1, 5e11 from epoch 2 on: the same configuration trains one good epoch, then diverges
BLOWS_UP_IN_EPOCH_2 = TrainingConfig(epochs=3, batch_size=32, lr=0.05,
                                     lr_schedule={"kind": "step", "every": 1, "factor": 1e13})


def test_diverging_run_raises_and_keeps_the_last_good_checkpoint(task, tmp_path):
    run(task, tmp_path, arm={"regulariser": "none"}, cfg=BLOWS_UP_IN_EPOCH_2, stop=1)
    ckpt = tmp_path / "checkpoint.pt"
    saved = ckpt.read_bytes()
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1 \(0-based; 8 batches per epoch\): "
                                                 r"cross-entropy = nan") as err:
        run(task, tmp_path, arm={"regulariser": "none"}, cfg=BLOWS_UP_IN_EPOCH_2)  # resumes, then diverges
    assert (err.value.epoch, err.value.batch, err.value.term) == (2, 1, "cross-entropy")
    assert "checkpoint.pt still holds epoch 1" in str(err.value)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "history.csv").exists()
    assert ckpt.read_bytes() == saved
    # a rerun with a fixed configuration ignores that checkpoint and succeeds
    fixed = TrainingConfig(epochs=2, batch_size=32, lr=0.05)
    h = run(task, tmp_path, arm={"regulariser": "none"}, cfg=fixed)
    assert list(h["epoch"]) == [1, 2] and np.isfinite(h["train_loss"]).all()
    assert (tmp_path / "model.pt").exists() and not ckpt.exists()


@pytest.fixture
def deferred_check(monkeypatch):
    """The GPU path on the CPU: the loss terms are read once, at the end of the epoch."""
    class Deferred(StepLosses):
        def __init__(self, steps, device, penalty_term, eager):
            super().__init__(steps, device, penalty_term, eager=False)
    monkeypatch.setattr(neurobias.train, "StepLosses", Deferred)


@pytest.mark.parametrize("check", ["each step", "end of epoch"])
def test_non_finite_penalty_names_its_first_batch_and_term(task, tmp_path, monkeypatch, request, check):
    if check == "end of epoch":
        request.getfixturevalue("deferred_check")
    run(task, tmp_path, stop=1)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    calls = []
    original = SimilarityRegulariser.loss

    def inf_at_the_fourth_step(self, features, rows):  # one stimulus batch per step
        calls.append(1)
        value = original(self, features, rows)
        return value * float("inf") if len(calls) == 4 else value

    monkeypatch.setattr(SimilarityRegulariser, "loss", inf_at_the_fourth_step)
    with pytest.raises(NonFiniteLossError) as err:
        run(task, tmp_path)
    # later batches have a NaN cross-entropy too (the step's update wrecked the weights): the first is named
    assert (err.value.epoch, err.value.batch, err.value.term) == (2, 3, "similarity loss")
    assert "epoch 2, batch 3 (0-based; 8 batches per epoch): similarity loss = inf" in str(err.value)
    assert len(calls) == (4 if check == "each step" else 8)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "history.csv").exists()


def test_step_losses_report_the_first_bad_step_and_term():
    nan, inf = float("nan"), float("inf")
    losses = StepLosses(5, "cpu", "RSM cost", eager=False)
    for step, (ce, pen, total) in enumerate([(1, 0, 1), (1, 2, 3), (1, inf, inf), (nan, 0, nan), (1, 0, 1)]):
        losses.record(6, step, *map(torch.tensor, (ce, pen, total)))  # deferred: no raise yet
    with pytest.raises(NonFiniteLossError, match=r"epoch 7, batch 2 .*: RSM cost = inf"):
        losses.check(6)
    eager = StepLosses(5, "cpu", "RSM cost", eager=True)
    eager.record(0, 0, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 1 .*: total loss = nan"):
        eager.record(0, 1, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(nan))


def test_non_finite_validation_loss_is_not_saved(task, tmp_path, monkeypatch):
    monkeypatch.setattr(neurobias.train, "evaluate", lambda *a, **k: (float("nan"), 0.1))
    with pytest.raises(NonFiniteLossError, match="epoch 1, on the validation images .*: validation cross-entropy = nan"):
        run(task, tmp_path, arm={"regulariser": "none"}, cfg=TrainingConfig(epochs=1, batch_size=32))
    assert not any(tmp_path.iterdir())


# -- resume -------------------------------------------------------------------------------------------
def test_killed_rsm_run_with_label_noise_and_restore_best_resumes_identically(task, tmp_path):
    arm = {"regulariser": "rsm", "r": 0.5, "layer": "layer2", "stimulus_batch_size": 8, "label_noise": 0.2}
    cfg = TrainingConfig(epochs=3, batch_size=32, lr=0.1, crop_padding=2, flip=True,
                         lr_schedule={"kind": "plateau", "patience": 1, "max_decays": 5})
    full = run(task, tmp_path / "full", arm=arm, cfg=cfg)
    run(task, tmp_path / "resumed", arm=arm, cfg=cfg, stop=2)    # killed after epoch 2: best epoch in the checkpoint
    resumed = run(task, tmp_path / "resumed", arm=arm, cfg=cfg)
    pd.testing.assert_frame_equal(full, resumed)
    assert full["restored"].sum() == 1 and (full["train_similarity_loss"] > 0).all()
    a, b = state(tmp_path / "full" / "model.pt"), state(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_cpu_trains_narrow_strided_1x1_convolutions_in_nchw():
    """oneDNN's AVX2 kernel for a strided 1x1 convolution's weight gradient in channels_last crashes
    the process, or silently returns wrong gradients, below 8 input channels (oneDNN#6035): a
    ResNet-18 of width 4 (layer2's shortcut: 4 -> 8 channels, stride 2) trains in NCHW on a CPU,
    width 8 keeps channels_last, and a GPU (cuDNN) keeps it for both."""
    from neurobias.models import build_classifier, strided_1x1_convolutions_too_narrow
    from neurobias.train import training_memory_format
    cfg = TrainingConfig(epochs=1)
    narrow, wide = (build_classifier("resnet18", 10, 3, [0.5] * 3, [0.25] * 3, width=w) for w in (4, 8))
    assert strided_1x1_convolutions_too_narrow(narrow) == ["backbone.layer2.0.shortcut.0"]
    assert strided_1x1_convolutions_too_narrow(wide) == []
    assert training_memory_format(cfg, narrow, "cpu") == torch.contiguous_format
    assert training_memory_format(cfg, wide, "cpu") == torch.channels_last
    assert training_memory_format(cfg, narrow, "cuda") == torch.channels_last
    assert training_memory_format(TrainingConfig(epochs=1, channels_last=False), wide, "cpu") == torch.contiguous_format
    grouped = torch.nn.Conv2d(16, 16, 1, stride=2, groups=4)  # 4 input channels per group
    assert strided_1x1_convolutions_too_narrow(torch.nn.Sequential(grouped)) == ["0"]


def test_auto_precision_is_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    """A T4 (compute capability 7.5) emulates bf16, and cuDNN has no bf16 convolutions for it:
    'auto' trains in fp32 there, in bf16 from Ampere (8.0) on; an explicit choice is kept."""
    from neurobias.train import resolve_precision
    for capability, expected in (((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert resolve_precision("auto", "cuda") == expected
        assert resolve_precision("bf16", "cuda") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"


def test_the_evaluation_batch_is_the_config_s_or_by_device_and_changes_no_score(task, tmp_path):
    import dataclasses
    auto = dataclasses.replace(CFG, epochs=2)
    assert auto.eval_batch_size == "auto"
    assert (evaluation_batch_size(auto, "cpu"), evaluation_batch_size(auto, torch.device("cuda", 1))) == (100, 512)
    assert evaluation_batch_size(dataclasses.replace(auto, eval_batch_size=7), "cpu") == 7
    # the validation images (64) in one batch (auto on a CPU) or in four: the same history, bit for bit
    whole = run(task, tmp_path / "auto", cfg=auto)
    in_fours = run(task, tmp_path / "sixteen", cfg=dataclasses.replace(auto, eval_batch_size=16))
    pd.testing.assert_frame_equal(whole, in_fours, check_exact=True)


# -- the plateau schedule, per-epoch test metrics ----------------------------------------------------
def test_plateau_schedule_decays_after_patience_and_stops():
    cfg = TrainingConfig(epochs=50, lr=0.1, lr_schedule={"kind": "plateau", "factor": 0.3, "patience": 2,
                                                         "threshold": 0.0, "max_decays": 1})
    acc = [0.1, 0.2, 0.2, 0.15, 0.3, 0.3, 0.3, 0.3]
    history = [{"val_accuracy": a} for a in acc]
    lrs = [learning_rate_and_stop(cfg, e, history)[0] for e in range(7)]
    # epochs 3 and 4 (0.2, 0.15) don't beat 0.2 -> reduced from epoch 4 on; 0.3 at epoch 5 is new best;
    # epochs 6 and 7 don't improve -> a second plateau: over max_decays -> stop before epoch 8
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.03, 0.03, 0.03])
    assert learning_rate_and_stop(cfg, 6, history) == (pytest.approx(0.03), False)
    assert learning_rate_and_stop(cfg, 7, history)[1] is True
    # threshold: an improvement must exceed it
    strict = TrainingConfig(epochs=50, lr=0.1, lr_schedule={**cfg.lr_schedule, "threshold": 0.15})
    assert learning_rate_and_stop(strict, 5, history)[0] == pytest.approx(0.03)  # 0.2 -> 0.3 is not > 0.15 + 0.2


def test_within_superclass_share_by_hand_with_a_stub_model():
    """epoch_test_metrics on fixed predictions: 6 test images, 4 errors, 3 of them within the
    true class's superclass (SUPERCLASS pairs classes 2k and 2k+1)."""
    from neurobias.train import epoch_test_metrics
    truth = [0, 2, 4, 6, 8, 1]
    pred = [1, 3, 4, 0, 9, 1]   # errors: 0->1 (same), 2->3 (same), 6->0 (other), 8->9 (same)

    class Stub(torch.nn.Module):
        def forward(self, x):  # image i carries the value i; its logits favour pred[i]
            idx = (x[:, 0, 0, 0] * 255).round().long()
            return torch.nn.functional.one_hot(torch.tensor(pred)[idx], 10).float() * 5

    images = torch.arange(6, dtype=torch.uint8).reshape(6, 1, 1, 1)
    out = epoch_test_metrics(Stub(), (images, torch.tensor(truth)), images, torch.tensor(truth),
                             SUPERCLASS, batch_size=4, device="cpu")
    assert out["test_accuracy"] == pytest.approx(2 / 6)
    assert out["within_superclass_error"] == pytest.approx(3 / 4)
    assert out["test_superclass_accuracy"] == pytest.approx(5 / 6)
    assert out["generalisation_error"] == pytest.approx(out["train_eval_loss"] - out["test_loss"])
    no_super = epoch_test_metrics(Stub(), (images, torch.tensor(truth)), images, torch.tensor(truth),
                                  None, batch_size=4, device="cpu")
    assert "within_superclass_error" not in no_super
