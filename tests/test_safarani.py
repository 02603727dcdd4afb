"""Safarani et al. 2021's training pieces: VGG-19 and its shared core, the MTL head and its
uncertainty-weighted loss, the batch ratio, the plateau schedule with restored best weights, the
oracle's two stages, MTL-oracle targets, response targets and the config rules."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from neurobias.config import ConfigError, validate_config
from neurobias.data import CLASS_NAMES, make_synthetic_task
from neurobias.data.cifar import luma
from neurobias.data.synthetic import make_stimulus_images
from neurobias.layer_names import ARCHITECTURE_TAPS
from neurobias.models import build_classifier
from neurobias.neural.similarity import shuffle_responses
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
from neurobias.regularisers.mtl import MTLRegulariser, fit_oracle_targets, neural_batches
from neurobias.models.io import load_classifier, stimuli_as_inputs
from neurobias.train import TrainingConfig, learning_rate_and_stop, train_arm

TINY_CFG = ROOT / "tests" / "configs" / "safarani_tiny.yaml"


@pytest.fixture(scope="module")
def task():
    s = make_synthetic_task(5, n_train=256, n_val=64, n_test=10, shortcut_amplitude=0.0)
    as_split = lambda k: (torch.as_tensor(luma(s[k][0])), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 100)
    responses = SimulatedV1(V1PopulationParams(n_neurons=20), 1).mean_rates(stim).astype(np.float32)
    tiers = np.array(["train"] * 80 + ["test"] * 20)
    return as_split("train"), as_split("val"), stim, tiers, responses


MTL_ARM = {"regulariser": "mtl", "target": "responses_model", "layer": "conv3_1", "batch_ratio": 1,
           "stimulus_batch_size": 16}
MODEL = {"architecture": "vgg19", "width": 4}
CFG = TrainingConfig(epochs=3, batch_size=32, lr=0.05, momentum=0.75)


def run(task, out, arm=MTL_ARM, cfg=CFG, stop=None, target=None, seed=0):
    train, val, stim, tiers, responses = task
    return train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers,
                     target=responses if target is None else target, diagnostic_target=np.eye(len(stim), dtype=np.float32),
                     arm=arm, model_cfg=MODEL, training=cfg, seed=seed, device="cpu", out_dir=out, progress=False,
                     context={"responses": responses}, stop_after_epoch=stop)


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


# -- VGG-19 -----------------------------------------------------------------------------------
def test_vgg19_is_configuration_e_and_stops_at_the_requested_tap():
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=8).eval()
    assert model.tap_names == ARCHITECTURE_TAPS["vgg19"]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 16
    x = torch.rand(2, 1, 64, 64)
    logits, full = model.forward_taps(x, ("conv3_1",))
    none, early = model.forward_taps(x, ("conv3_1",), features_only=True)
    assert none is None and logits.shape == (2, 10)
    assert early["conv3_1"].shape == (2, 32, 16, 16)  # 4 w channels after two poolings
    assert torch.equal(early["conv3_1"], full["conv3_1"])


def test_reset_after_keeps_the_core_and_redraws_the_rest():
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=4)
    before = copy.deepcopy(model.state_dict())
    model.backbone.reset_after("conv3_1", torch.Generator().manual_seed(1))
    after = model.state_dict()
    assert torch.equal(before["backbone.features.conv3_1.0.weight"], after["backbone.features.conv3_1.0.weight"])
    assert torch.equal(before["backbone.features.conv1_1.0.weight"], after["backbone.features.conv1_1.0.weight"])
    assert not torch.equal(before["backbone.features.conv3_2.0.weight"], after["backbone.features.conv3_2.0.weight"])
    assert not torch.equal(before["backbone.classifier.0.weight"], after["backbone.classifier.0.weight"])


# -- the MTL head and loss ----------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1, 3, 0.5, 0.25, 1 / 3])
def test_neural_batches_follow_the_ratio(ratio):
    counts = [neural_batches(t, ratio) for t in range(60)]
    assert sum(counts) == math.floor(60 * ratio + 1e-9)
    assert max(counts) == max(1, math.floor(ratio))
    if ratio >= 1:
        assert set(counts) == {ratio}


def test_uncertainty_weighted_loss_is_kendalls_formula():
    reg = MTLRegulariser(np.ones((10, 3), np.float32), np.arange(8), "conv3_1", 4)
    with torch.no_grad():
        reg.log_var_classification.fill_(0.7)
        reg.log_var_neural.fill_(-0.4)
    ce, mse = torch.tensor(2.0), torch.tensor(0.3)
    expected = math.exp(-0.7) * 2.0 + 0.35 + 0.5 * math.exp(0.4) * 0.3 - 0.2
    assert float(reg.total_loss(ce, mse).detach()) == pytest.approx(expected, rel=1e-6)
    assert float(reg.total_loss(ce, None).detach()) == pytest.approx(math.exp(-0.7) * 2.0 + 0.35, rel=1e-6)
    # the optimum of s_c is log(CE): d/ds (exp(-s) CE + s/2) = 0 at exp(-s) CE = 1/2
    s = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([s], lr=0.2)
    for _ in range(300):
        opt.zero_grad()
        (torch.exp(-s) * ce + 0.5 * s).backward()
        opt.step()
    assert float(s.detach()) == pytest.approx(math.log(2 * 2.0), abs=1e-3)


def test_readout_starts_at_the_mean_target_and_predicts_positive_rates():
    rng = np.random.default_rng(0)
    target = rng.gamma(2.0, 1.0, (30, 5)).astype(np.float32)
    reg = MTLRegulariser(target, np.arange(20), "conv3_1", 6, seed=3, target_scale="sd")
    # target_scale sd: targets in units of each neuron's SD over the training images; the bias
    # starts at their mean (raw targets, the default: tests/test_faithful_methods.py)
    scaled = target / target[:20].std(0)
    assert np.allclose(reg.target.numpy(), scaled, rtol=1e-5)
    assert np.allclose(reg.readout.bias.detach().numpy(), scaled[:20].mean(0), rtol=1e-5)
    assert float(reg.readout.sigma.detach().min()) >= 0 and float(reg.readout.sigma.detach().max()) <= 0.6
    assert float(reg.readout.mu.detach().abs().max()) <= 0.3
    out = reg.predict(torch.randn(4, 6, 8, 8) * 5)
    assert out.shape == (4, 5) and bool((out > 0).all())


def test_mtl_refuses_nan_targets_and_bad_ratio():
    with pytest.raises(ValueError, match="NaN"):
        MTLRegulariser(np.full((4, 2), np.nan, np.float32), np.arange(3), "conv3_1", 2)
    with pytest.raises(ValueError, match="batch_ratio"):
        MTLRegulariser(np.ones((4, 2), np.float32), np.arange(3), "conv3_1", 2, batch_ratio=0)


def test_mtl_head_learns_real_targets_not_shuffled_ones(task, tmp_path):
    _, _, stim, tiers, responses = task
    cfg = TrainingConfig(epochs=8, batch_size=32, lr=0.1, momentum=0.75)
    # targets in per-neuron SD units: in 8 epochs this 4-channel VGG learns them, while on raw rates
    # (SD about 4.4, the default's units) its head stays near r = 0 that long; real vs shuffled is
    # the same question in either unit
    arm = {**MTL_ARM, "batch_ratio": 3, "target_scale": "sd"}
    real = run(task, tmp_path / "real", arm=arm, cfg=cfg)
    shuffled = run(task, tmp_path / "shuffled", arm=arm, cfg=cfg, target=shuffle_responses(responses, 0))
    # held-out r of a 4-channel-wide VGG on 80 stimulus images: small, but real targets are learnt
    assert real["neural_r_target"].iloc[-1] > 0.15 > real["neural_r_target"].iloc[0]
    assert real["neural_r_data"].iloc[-1] == pytest.approx(real["neural_r_target"].iloc[-1], abs=1e-6)
    assert abs(shuffled["neural_r_target"].iloc[-1]) < 0.1                    # nothing to learn across images
    head = torch.load(tmp_path / "real" / "model.pt", weights_only=True)["neural_head"]
    assert set(head) >= {"readout.mu", "readout.weight", "log_var_classification", "log_var_neural"}
    assert float(head["log_var_classification"]) == pytest.approx(real["log_var_classification"].iloc[-1])


def test_batch_ratio_sets_the_number_of_neural_batches(task, tmp_path, monkeypatch):
    calls = []
    original = MTLRegulariser.loss
    monkeypatch.setattr(MTLRegulariser, "loss", lambda self, f, rows: (calls.append(len(rows)), original(self, f, rows))[1])
    steps = 256 // 32
    for ratio in (2, 0.5):
        calls.clear()
        run(task, tmp_path / f"r{ratio}", arm={**MTL_ARM, "batch_ratio": ratio},
            cfg=TrainingConfig(epochs=1, batch_size=32, lr=0.05))
        assert len(calls) == int(steps * ratio) and set(calls) == {16}


def test_killed_mtl_run_resumes_to_identical_weights(task, tmp_path):
    full = run(task, tmp_path / "full")
    run(task, tmp_path / "resumed", stop=1)
    resumed = run(task, tmp_path / "resumed")
    pd.testing.assert_frame_equal(full, resumed)
    a, b = weights(tmp_path / "full" / "model.pt"), weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- the adaptive schedule ----------------------------------------------------------------------
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


def test_restore_best_keeps_the_best_validation_epoch(task, tmp_path):
    cfg = TrainingConfig(epochs=4, batch_size=32, lr=0.2, momentum=0.75,
                         lr_schedule={"kind": "plateau", "patience": 1, "max_decays": 5})
    h = run(task, tmp_path, cfg=cfg, arm={"regulariser": "none"})
    best = int(h["val_accuracy"].values.argmax())
    assert h["restored"].tolist() == [i == best for i in range(len(h))]
    train, val, *_ = task
    model = load_classifier(tmp_path / "model.pt")
    with torch.no_grad():
        acc = float((model(val[0].float() / 255).argmax(1) == val[1]).float().mean())
    assert acc == pytest.approx(h["val_accuracy"].max())


# -- the oracle -------------------------------------------------------------------------------------
ORACLE = {"regulariser": "oracle", "layer": "conv3_1",
          "oracle": {"pretrain_epochs": 2, "corruptions": ["gaussian_noise", "contrast"], "groups": 2}}


def test_oracle_freezes_its_core_and_retrains_the_rest(task, tmp_path):
    cfg = TrainingConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.75)
    stage1 = run(task, tmp_path / "a", arm=ORACLE, cfg=cfg, stop=2)
    core = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    h = run(task, tmp_path / "a", arm=ORACLE, cfg=cfg)
    assert h["stage"].tolist() == ["pretraining"] * 2 + ["retraining"] * 2
    assert (stage1["train_similarity_loss"] > 0).all()            # the consistency term was on
    final = weights(tmp_path / "a" / "model.pt")
    for k in final:
        if k.startswith("backbone.features.conv1") or k.startswith("backbone.features.conv2") \
                or k.startswith("backbone.features.conv3_1") or k.startswith("backbone.features.pool1"):
            assert torch.equal(final[k], core[k]), k               # frozen, BN statistics included
    assert not torch.equal(final["backbone.features.conv3_2.0.weight"], core["backbone.features.conv3_2.0.weight"])
    # resumed across the switch: the same network
    run(task, tmp_path / "b", arm=ORACLE, cfg=cfg, stop=2)
    run(task, tmp_path / "b", arm=ORACLE, cfg=cfg, stop=3)
    run(task, tmp_path / "b", arm=ORACLE, cfg=cfg)
    again = weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(final[k], again[k]) for k in final)


def test_oracle_readout_targets_fit_what_the_core_can_express(task):
    _, _, stim, tiers, _ = task
    torch.manual_seed(0)
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=4).eval()
    x = stimuli_as_inputs(stim, 1, 32)
    # responses a Gaussian readout of this very core can produce
    teacher = MTLRegulariser(np.ones((len(stim), 8), np.float32), np.arange(80), "conv3_1", 16, seed=9).eval()
    with torch.no_grad():
        teacher.readout.weight.normal_(0, 1.0)
        _, f = model.forward_taps(x, ("conv3_1",), features_only=True)
        responses = teacher.predict(f["conv3_1"]).numpy()
    targets, metrics = fit_oracle_targets(model, x, tiers, responses, "conv3_1", epochs=200, lr=0.03)
    assert targets.shape == responses.shape and metrics["heldout_r"] > 0.6
    shuffled, m2 = fit_oracle_targets(model, x, tiers, shuffle_responses(responses, 0), "conv3_1", epochs=200, lr=0.03)
    assert m2["heldout_r"] < metrics["heldout_r"] - 0.3


def test_shuffled_responses_keep_every_row():
    r = np.arange(40, dtype=np.float32).reshape(10, 4)
    s = shuffle_responses(r, 0)
    assert sorted(map(tuple, s)) == sorted(map(tuple, r)) and not np.array_equal(s, r)
    assert np.array_equal(s, shuffle_responses(r, 0)) and not np.array_equal(s, shuffle_responses(r, 1))


# -- configuration -----------------------------------------------------------------------------------
def tiny():
    return yaml.safe_load(TINY_CFG.read_text())


@pytest.mark.parametrize("change, field", [
    (lambda s: (s["model"].update(architecture="resnet18"),
                [a.update(layer="layer1") for a in s["arms"].values() if "layer" in a]), "arms.oracle.regulariser"),
    (lambda s: s["similarity"].pop("oracle_readout"), "similarity.oracle_readout"),
    (lambda s: s["similarity"]["oracle_readout"].update(arm="baseline"), "similarity.oracle_readout.arm"),
    (lambda s: s["sweeps"]["batch_ratio"].update(arms=["baseline"]), "sweeps.batch_ratio.arms"),
    (lambda s: s["arms"]["oracle"].update(target="responses_model"), "arms.oracle.target"),
    (lambda s: s["arms"]["mtl_monkey"].update(target="model"), "arms.mtl_monkey.target"),
    (lambda s: s["arms"]["mtl_monkey"].update(layer="conv9_9"), "arms.mtl_monkey.layer"),
    (lambda s: s["arms"]["mtl_monkey"].update(batch_ratio=0), "batch_ratio"),
    (lambda s: s["evaluations"]["corruptions"].update(corruptions=["rain"]), "corruptions"),
    (lambda s: s["evaluations"]["corruptions"].update(regression_pools=["nope"]), "regression_pools"),
    (lambda s: s["evaluations"]["corruptions"].update(regression_pools=["mtl_monkey_ratio2"]), "regression_pools"),
    (lambda s: s["evaluations"]["corruptions"].update(example_severity=2), "example_severity"),
    (lambda s: s["arms"]["oracle"].update(model={"vone": True}), "arms.oracle.model.vone"),
    (lambda s: s["arms"]["oracle"]["oracle"].update(clean_fraction=0.99), "arms.oracle.oracle.clean_fraction"),
])
def test_bad_safarani_configs_name_the_field(change, field):
    cfg = tiny()
    change(cfg["studies"]["saf"])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(cfg)


def test_corruptions_need_images_of_32_px():
    cfg = tiny()
    cfg["datasets"]["tinygrey"]["image_size"] = 16
    cfg["studies"]["saf"]["model"]["input_size"] = 32
    with pytest.raises(ConfigError, match=r"datasets\.tinygrey\.image_size"):
        validate_config(cfg)


def test_batch_ratio_sweep_generates_named_arms():
    study = validate_config(tiny())["studies"]["saf"]
    assert study["arms"]["mtl_monkey_ratio0.5"] == {**study["arms"]["mtl_monkey"], "batch_ratio": 0.5,
                                                    "sweep_of": "mtl_monkey"}
    assert {"mtl_shuffled_ratio2", "mtl_monkey_ratio2"} <= set(study["arms"])
