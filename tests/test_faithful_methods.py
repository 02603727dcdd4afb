"""Issue 17, "faithful methods": each regulariser as the authors' code and papers have it, with the
old behaviour kept where it is an option.

- MTL targets in raw units (``target_scale: raw``; ``sd`` the old per-neuron scaling);
- the stimulus pass updates BatchNorm's running statistics (``neural_batchnorm: update``;
  ``freeze`` the old behaviour), for every regulariser with a stimulus pass;
- the oracle's Euclidean consistency loss, and the preset using it;
- the MTL-oracle readout's 10 epochs, Li's 64 stimulus images per step;
- Li's network similarity z-scores every unit, as the neurons are for S_neural;
- the Dapello budgets of the default config say what they are.
"""

import copy
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from test_safarani import task  # noqa: F401  (fixture: a grey synthetic task and simulated V1 responses)
from neurobias.config import ConfigError, validate_config, with_defaults
from neurobias.data.synthetic import make_stimulus_images
from neurobias.models import build_classifier
from neurobias.neural.similarity import feature_similarity
from neurobias.neural.v1_model import pearson_per_neuron
from neurobias.regularisers import MTLRegulariser, build_regulariser
from neurobias.regularisers.mtl import fit_oracle_targets
from neurobias.regularisers.oracle import OracleTraining
from neurobias.models.io import stimuli_as_inputs
from neurobias.train import (EpochStep, RunData, TrainingConfig, batchnorm_layers, build_model,
                             build_run_regulariser, epoch_generator)

STUDIES = ROOT / "studies"


def preset(name: str) -> dict:
    return validate_config(yaml.safe_load((STUDIES / name).read_text()))


def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def tiny_safarani() -> dict:
    return yaml.safe_load((ROOT / "tests" / "configs" / "safarani_tiny.yaml").read_text())


# -- 1. MTL targets: raw by default, per-neuron SD as an option ---------------------------------------
def gamma_targets(n=30, k=5, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 3.0, (n, k)).astype(np.float32)


def test_mtl_targets_are_raw_by_default():
    target = gamma_targets()
    reg = MTLRegulariser(target, np.arange(20), "conv3_1", 6, seed=3)
    assert reg.target_scale_mode == "raw"
    assert torch.equal(reg.target, torch.as_tensor(target))           # not divided by anything
    assert torch.equal(reg.target_scale, torch.ones(5))
    np.testing.assert_allclose(reg.readout.bias.detach().numpy(), target[:20].mean(0), rtol=1e-6)


def test_mtl_target_scale_sd_divides_each_neuron_by_its_training_sd():
    target = gamma_targets()
    reg = MTLRegulariser(target, np.arange(20), "conv3_1", 6, seed=3, target_scale="sd")
    sd = target[:20].std(0)
    np.testing.assert_allclose(reg.target.numpy(), target / sd, rtol=1e-6)
    np.testing.assert_allclose(reg.target_scale.numpy(), sd, rtol=1e-6)
    with pytest.raises(ValueError, match="target_scale"):
        MTLRegulariser(target, np.arange(20), "conv3_1", 6, target_scale="zscore")


def test_build_regulariser_passes_the_arms_target_scale():
    target = gamma_targets()
    arm = {"regulariser": "mtl", "target": "responses_model", "layer": "conv3_1"}
    raw = build_regulariser(arm, target, np.arange(20), {"tap_channels": {"conv3_1": 6}, "seed": 0})
    sd = build_regulariser({**arm, "target_scale": "sd"}, target, np.arange(20),
                           {"tap_channels": {"conv3_1": 6}, "seed": 0})
    assert torch.equal(raw.target, torch.as_tensor(target))
    assert not torch.allclose(sd.target, torch.as_tensor(target))


@pytest.fixture(scope="module")
def vgg_and_stimuli():
    torch.manual_seed(0)
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=4).eval()
    stim = make_stimulus_images(2, 60)
    return model, stimuli_as_inputs(stim, 1, 32)


@pytest.mark.parametrize("scale", ["raw", "sd"])
def test_heldout_prediction_compares_in_units_that_do_not_matter(vgg_and_stimuli, scale):
    """Pearson r per neuron against the training targets (in the head's units) and against raw
    responses (the recording's units) is the same number when the two are the same responses:
    held-out prediction does not depend on target_scale's units."""
    model, x = vgg_and_stimuli
    responses = gamma_targets(len(x), 4, seed=1) * np.array([1, 10, 100, 1000], np.float32)
    rows = np.arange(40)
    reg = MTLRegulariser(responses, rows, "conv3_1", 16, seed=2, target_scale=scale)
    with torch.no_grad():
        reg.readout.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(4))
    test_rows = torch.arange(40, len(x))
    out = reg.heldout_prediction(model, x, test_rows, responses)
    assert out["neural_r_target"] == pytest.approx(out["neural_r_data"], abs=1e-6)
    reg.eval()  # evaluation: the readout at its positions, no sampling
    with torch.no_grad():
        _, f = model.forward_taps(x[test_rows], ("conv3_1",), features_only=True)
        pred = reg.predict(f["conv3_1"]).numpy()
    assert out["neural_r_data"] == pytest.approx(float(np.nanmean(pearson_per_neuron(pred, responses[40:]))),
                                                abs=1e-6)


@pytest.mark.parametrize("scale", ["raw", "sd"])
def test_oracle_readout_targets_come_back_in_the_responses_units(vgg_and_stimuli, scale):
    model, x = vgg_and_stimuli
    responses = gamma_targets(len(x), 4, seed=2) * 50.0
    tiers = np.array(["train"] * 40 + ["test"] * (len(x) - 40))
    targets, _ = fit_oracle_targets(model, x, tiers, responses, "conv3_1", epochs=30, lr=0.05, target_scale=scale)
    # the readout starts at the mean training response and learns in that unit: its predictions
    # are rates of the responses' size, not of SD units (~1)
    np.testing.assert_allclose(targets.mean(0), responses[:40].mean(0), rtol=0.5)


def test_target_scale_schema_default_and_error():
    cfg = tiny_safarani()
    arms = validate_config(copy.deepcopy(cfg))["studies"]["saf"]["arms"]
    assert {arms[a]["target_scale"] for a in ("mtl_monkey", "mtl_shuffled", "mtl_oracle")} == {"raw"}
    cfg["studies"]["saf"]["arms"]["mtl_monkey"]["target_scale"] = "zscore"
    with pytest.raises(ConfigError, match=r"studies\.saf\.arms\.mtl_monkey\.target_scale"):
        validate_config(cfg)


def test_safarani_preset_trains_on_raw_targets():
    study = preset("safarani2021.yaml")["studies"]["safarani2021"]
    mtl = {name: arm for name, arm in study["arms"].items() if arm["regulariser"] == "mtl"}
    assert len(mtl) > 3 and {arm["target_scale"] for arm in mtl.values()} == {"raw"}
    assert {arm["neural_batchnorm"] for arm in mtl.values()} == {"update"}


# -- 2. BatchNorm statistics in the stimulus pass --------------------------------------------------
@pytest.fixture(scope="module")
def bn_data(task):
    """test_safarani's grey task and simulated V1, with a similarity target from its responses."""
    train, val, stim, tiers, responses = task
    return train, val, stim, tiers, responses, np.corrcoef(responses).astype(np.float32)


ARMS = {
    "similarity": ({"regulariser": "similarity", "target": "model", "alpha": 1.0, "layers": ["layer1", "layer2"],
                    "stimulus_batch_size": 8}, "similarity", 0),
    "rsm": ({"regulariser": "rsm", "target": "rsm_v1", "r": 0.5, "layer": "layer2", "stimulus_batch_size": 8},
            "similarity", 1),  # alternate: the neural term on odd steps
    "mtl": ({"regulariser": "mtl", "target": "responses_model", "layer": "layer2", "stimulus_batch_size": 8},
            "responses", 0),
}


def bn_state_after_one_step(bn_data, arm: dict | None, target_kind: str, step: int):
    """BatchNorm running statistics of a ResNet-18 (width 4) after one training step of ``arm``
    (None: cross-entropy alone) from the same initial weights and the same generator."""
    train, val, stim, tiers, responses, similarity = bn_data
    target = None if arm is None else (similarity if target_kind == "similarity" else responses)
    data = RunData.prepare(train=train, val=val, test=None, stimuli=stim, stimulus_tiers=tiers, target=target,
                           diagnostic_target=similarity, superclass_of_class=None, responses=responses,
                           label_noise=None, seed=0)
    cfg = TrainingConfig(epochs=1, batch_size=16, precision="fp32", channels_last=False)
    model = build_model(data, {"architecture": "resnet18", "width": 4}, 0, "cpu")
    stim_x = stimuli_as_inputs(data.stimuli, data.channels, data.size)
    reg = None if arm is None else build_run_regulariser(arm, data, model, stim_x, {}, 0, "cpu")
    run = EpochStep(model, reg, data, stim_x, cfg, torch.device("cpu"), "fp32", torch.contiguous_format,
                    "term", progress=False)
    model.train()
    g = epoch_generator(0, 0)
    idx = torch.arange(16)
    _, _, _, _, active = run._step(0, step, idx, data.train_y[idx], g)
    assert active == (arm is not None)
    bns = batchnorm_layers(model)
    return ([m.running_mean.clone() for m in bns], [m.running_var.clone() for m in bns],
            [int(m.num_batches_tracked) for m in bns], reg)


@pytest.mark.parametrize("kind", sorted(ARMS))
def test_neural_batchnorm_update_moves_the_running_statistics_and_freeze_does_not(bn_data, kind):
    arm, target_kind, step = ARMS[kind]
    mean0, var0, tracked0, _ = bn_state_after_one_step(bn_data, None, target_kind, step)
    mean_u, var_u, tracked_u, reg_u = bn_state_after_one_step(bn_data, arm, target_kind, step)
    mean_f, var_f, tracked_f, reg_f = bn_state_after_one_step(bn_data, {**arm, "neural_batchnorm": "freeze"},
                                                              target_kind, step)
    assert reg_u.neural_batchnorm == "update" and reg_f.neural_batchnorm == "freeze"  # the default is update
    # freeze: exactly the statistics of the classification batch alone (as cross-entropy only)
    assert all(torch.equal(a, b) for a, b in zip(mean_f, mean0))
    assert all(torch.equal(a, b) for a, b in zip(var_f, var0))
    assert tracked_f == tracked0
    # update: the stimulus batch moved them too, in the layers it passed
    assert not torch.allclose(mean_u[0], mean0[0]) and not torch.allclose(var_u[0], var0[0])
    assert tracked_u[0] == tracked0[0] + 1


def test_neural_batchnorm_schema_defaults_and_error():
    cfg = demo_config()
    arms = validate_config(copy.deepcopy(cfg))["studies"]
    for study, arm in (("demo", "neural_model"), ("federer_demo", "v1"), ("safarani_demo", "mtl_monkey")):
        assert arms[study]["arms"][arm]["neural_batchnorm"] == "update", (study, arm)
    assert "neural_batchnorm" not in arms["demo"]["arms"]["none"]
    for kind in ("similarity", "rsm", "mtl"):
        assert with_defaults({"regulariser": kind}, "arm")["neural_batchnorm"] == "update"
    cfg["studies"]["demo"]["arms"]["neural_model"]["neural_batchnorm"] = "frozen"
    with pytest.raises(ConfigError, match=r"studies\.demo\.arms\.neural_model\.neural_batchnorm"):
        validate_config(cfg)


# -- 3. the oracle's Euclidean consistency --------------------------------------------------------
def oracle(consistency: str) -> OracleTraining:
    return OracleTraining("conv3_1", pretrain_epochs=1, consistency=consistency)


def consistency_features(n_batch=6, n_corrupted=3, seed=0):
    """First views [n_batch] (clean ones first) then second views [n_corrupted], as a feature map."""
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n_batch + n_corrupted, 4, 3, 3)).astype(np.float32))


def test_euclidean_consistency_is_the_mean_l2_distance_between_the_two_versions():
    feats = consistency_features()
    f = feats.numpy().reshape(len(feats), -1).astype(np.float64)
    first, second = f[3:6], f[6:]
    hand = np.mean([np.sqrt(np.sum((first[i] - second[i]) ** 2)) for i in range(3)])
    assert float(oracle("euclidean").consistency(feats, 6, 3)) == pytest.approx(hand, rel=1e-6)
    # the other criteria are unchanged
    assert float(oracle("mse").consistency(feats, 6, 3)) == pytest.approx(np.mean((first - second) ** 2), rel=1e-6)
    cos = [first[i] @ second[i] / (np.linalg.norm(first[i]) * np.linalg.norm(second[i])) for i in range(3)]
    assert float(oracle("cosine").consistency(feats, 6, 3)) == pytest.approx(np.mean(1 - np.array(cos)), rel=1e-5)


def test_euclidean_consistency_of_identical_versions_is_zero_with_a_finite_gradient():
    feats = consistency_features()
    feats[6:] = feats[3:6]      # the same corruption drawn twice (deterministic ones exist)
    feats.requires_grad_(True)
    loss = oracle("euclidean").consistency(feats, 6, 3)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(feats.grad).all()


def test_oracle_consistency_schema_takes_euclidean_and_names_a_bad_value():
    cfg = tiny_safarani()
    cfg["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] = "euclidean"
    assert validate_config(copy.deepcopy(cfg))["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] == "euclidean"
    cfg["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] = "l2"
    with pytest.raises(ConfigError, match=r"studies\.saf\.arms\.oracle\.oracle\.consistency"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="consistency"):
        oracle("l2")


def test_safarani_preset_says_and_does_euclidean_and_a_10_epoch_readout():
    study = preset("safarani2021.yaml")["studies"]["safarani2021"]
    assert study["arms"]["oracle"]["oracle"]["consistency"] == "euclidean"
    assert study["similarity"]["oracle_readout"]["epochs"] == 10
    header = (STUDIES / "safarani2021.yaml").read_text().split("\nextends:")[0]
    assert "Euclidean distance" in header and not re.search(r"squared[-\s#]*error consistency", header)


# -- 5. Li's network similarity: units z-scored like the neurons ------------------------------------
def hand_zscored_cosine(a: np.ndarray) -> np.ndarray:
    b = a.reshape(len(a), -1).astype(np.float64)
    z = (b - b.mean(0)) / b.std(0)          # population SD over the batch, as for the neurons
    n = np.linalg.norm(z, axis=1)
    return np.array([[z[i] @ z[j] / (n[i] * n[j]) for j in range(len(z))] for i in range(len(z))])


def test_feature_similarity_is_the_cosine_of_per_unit_zscored_features():
    a = np.random.default_rng(7).normal(size=(6, 3, 2, 2)).astype(np.float32)
    a *= np.random.default_rng(8).uniform(0.1, 20, size=(1, 3, 2, 2)).astype(np.float32)  # unequal unit scales
    np.testing.assert_allclose(feature_similarity(torch.from_numpy(a)).numpy(), hand_zscored_cosine(a), atol=1e-5)


def test_feature_similarity_does_not_let_one_loud_unit_dominate():
    """With centring alone, multiplying one unit by 1000 makes S that unit's outer product; z-scored,
    every unit counts alike and S does not change."""
    a = torch.from_numpy(np.random.default_rng(9).normal(size=(8, 12)).astype(np.float32))
    loud = a.clone()
    loud[:, 0] *= 1000
    np.testing.assert_allclose(feature_similarity(loud).numpy(), feature_similarity(a).numpy(), atol=1e-5)


def test_feature_similarity_ignores_a_dead_unit_and_keeps_its_gradient_finite():
    a = torch.from_numpy(np.random.default_rng(10).normal(size=(6, 5)).astype(np.float32))
    with_dead = torch.cat([a, torch.full((6, 1), 3.0)], 1).requires_grad_(True)
    s = feature_similarity(with_dead)
    np.testing.assert_allclose(s.detach().numpy(), feature_similarity(a).numpy(), atol=1e-5)
    s.sum().backward()
    assert torch.isfinite(with_dead.grad).all()


# -- 6. Li's preset: as many stimulus images as classification images --------------------------
def test_li_preset_sends_64_stimulus_images_per_step():
    config = preset("li2019.yaml")
    for name, study in config["studies"].items():
        sim = [arm for arm in study["arms"].values() if arm["regulariser"] == "similarity"]
        assert sim, name
        assert {arm["stimulus_batch_size"] for arm in sim} == {study["training"]["batch_size"]} == {64}
        assert {arm["neural_batchnorm"] for arm in sim} == {"update"}


# -- 7. Dapello budgets of the default config -----------------------------------------------------
def test_default_white_box_budgets_are_dapellos_larger_budgets_and_say_so():
    budgets = validate_config(demo_config())["brain_likeness"]["white_box"]["budgets"]
    # Dapello et al. on 224 px: small Linf 1/1020, L2 0.15, L1 40; the larger ones 4x that.
    # At 32 px: Linf as is, L2 x 1/7, L1 x 1/49.
    assert budgets["linf"] == [pytest.approx(4 / 1020, rel=0.01)]
    assert budgets["l2"] == [pytest.approx(4 * 0.15 / 7, rel=0.01)]
    assert budgets["l1"] == [pytest.approx(4 * 40 / 49, rel=0.01)]
    text = (ROOT / "config.yaml").read_text()
    comment = text[text.index("  white_box:"):text.index("  manipulations:")]
    assert "LARGER of Dapello" in comment and not re.search(r"small budgets for 224", comment)
