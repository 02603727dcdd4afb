"""The training loop: resume equality, checkpoint safety, schedule, augmentation, regularised arms."""

import numpy as np
import pandas as pd
import pytest
import torch

from neurobias.data import CLASS_NAMES, make_synthetic_task
from neurobias.data.synthetic import make_stimulus_images
from neurobias.neural.similarity import neural_similarity
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
from neurobias.train import TrainingConfig, augment, learning_rate, load_classifier, train_arm


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
