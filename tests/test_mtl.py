"""Tests for neurobias.regularisers.mtl (Safarani et al. 2021's multi-task head): the batch ratio, the
uncertainty-weighted loss, the readout, raw and per-neuron-SD targets, held-out prediction and the
MTL-oracle targets."""

import math

import numpy as np
import pytest
import torch

from neurobias.data.synthetic import make_stimulus_images
from neurobias.models import build_classifier
from neurobias.models.io import stimuli_as_inputs
from neurobias.neural.similarity import shuffle_responses
from neurobias.neural.v1_model import pearson_per_neuron
from neurobias.regularisers import build_regulariser
from neurobias.regularisers.mtl import MTLRegulariser, fit_oracle_targets, neural_batches
from test_safarani import task  # noqa: F401  (fixture: a grey synthetic task and simulated V1 responses)


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


# -- targets: raw by default, per-neuron SD as an option -------------------------------------------
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


# -- MTL-oracle targets ----------------------------------------------------------------------------
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


@pytest.mark.parametrize("scale", ["raw", "sd"])
def test_oracle_readout_targets_come_back_in_the_responses_units(vgg_and_stimuli, scale):
    model, x = vgg_and_stimuli
    responses = gamma_targets(len(x), 4, seed=2) * 50.0
    tiers = np.array(["train"] * 40 + ["test"] * (len(x) - 40))
    targets, _ = fit_oracle_targets(model, x, tiers, responses, "conv3_1", epochs=30, lr=0.05, target_scale=scale)
    # the readout starts at the mean training response and learns in that unit: its predictions
    # are rates of the responses' size, not of SD units (~1)
    np.testing.assert_allclose(targets.mean(0), responses[:40].mean(0), rtol=0.5)
