"""Tests for neurobias.predictivity (Brain-Score-style V1 neural predictivity).

Ground truths used below
-----------------------

Split-half ceiling. Let the response of neuron k to image n on repeat j be s_n + e_nj, with s_n of
variance s2 across images and independent trial noise e of variance n2. The average of one half
(R/2 trials) is s_n + noise of variance 2 n2 / R, so the two halves correlate with

    r_half = s2 / (s2 + 2 n2 / R)

and Spearman-Brown with n = 2 gives

    2 r_half / (1 + r_half) = 2 s2 / (2 s2 + 2 n2 / R) = R s2 / (R s2 + n2),

which is also the squared correlation of the noise-free signal s with the full trial average
(variance s2 + n2 / R): corr(s, avg)^2 = s2 / (s2 + n2 / R). So a perfect, noise-free model reaches
r = sqrt(ceiling), and ev = r^2 / ceiling = 1.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from neurobias.predictivity import (
    best_layer,
    explained_variance,
    internal_consistency,
    layer_explained_variance,
    pls_predictions,
)


def linear_population(n_images=400, n_features=50, n_neurons=20, repeats=4, noise_sd=math.sqrt(2.0),
                      n_dead=0, seed=0):
    """X [N, D] Gaussian; responses [N, R, K] = X W + trial noise; W columns of unit norm in
    expectation, so each neuron's signal variance is ~1 and its ceiling ~ R / (R + noise_sd^2).
    ``n_dead`` extra neurons are pure noise (ceiling ~0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_images, n_features))
    w = rng.standard_normal((n_features, n_neurons)) / math.sqrt(n_features)
    signal = x @ w
    if n_dead:
        signal = np.concatenate([signal, np.zeros((n_images, n_dead))], axis=1)
    responses = signal[:, None, :] + noise_sd * rng.standard_normal((n_images, repeats, signal.shape[1]))
    return x, responses


# -- internal consistency -------------------------------------------------------------------------
def test_internal_consistency_matches_spearman_brown_theory():
    rng = np.random.default_rng(1)
    n, repeats = 20000, 4
    s2 = np.array([1.0, 1.0, 1.0, 0.5, 2.0, 1.0])
    n2 = np.array([0.25, 1.0, 4.0, 4.0, 1.0, 12.0])
    expected = repeats * s2 / (repeats * s2 + n2)          # 0.94, 0.8, 0.5, 0.33, 0.89, 0.25
    signal = rng.standard_normal((n, len(s2))) * np.sqrt(s2)
    responses = signal[:, None, :] + rng.standard_normal((n, repeats, len(s2))) * np.sqrt(n2)
    got = internal_consistency(responses, seed=0)
    assert got.shape == (len(s2),)
    np.testing.assert_allclose(got, expected, atol=0.03)
    # and it is ordered by signal-to-noise as theory says
    assert np.all(np.diff(got[np.argsort(expected)]) > 0)


def test_internal_consistency_of_pure_noise_is_zero():
    rng = np.random.default_rng(2)
    responses = rng.standard_normal((3000, 4, 30))
    got = internal_consistency(responses, seed=0)
    assert abs(float(np.mean(got))) < 0.02
    assert np.all(np.abs(got) < 0.12)


def test_internal_consistency_skips_missing_trials():
    """R = 2: every split compares trial 0 with trial 1 (Pearson is symmetric), so the result is
    Spearman-Brown of a plain Pearson r over the images where both trials exist."""
    rng = np.random.default_rng(3)
    n = 200
    s = rng.standard_normal(n)
    responses = (s[:, None] + rng.standard_normal((n, 2)))[:, :, None].repeat(2, axis=2)
    responses[:, :, 1] += rng.standard_normal((n, 2))  # neuron 1: noisier
    missing = rng.random((n, 2, 2)) < 0.15
    responses[missing] = np.nan
    got = internal_consistency(responses, seed=0, n_splits=3)
    for k in range(2):
        a, b = responses[:, 0, k], responses[:, 1, k]
        ok = ~np.isnan(a) & ~np.isnan(b)
        assert ok.sum() < n  # some images really were dropped
        r = np.corrcoef(a[ok], b[ok])[0, 1]
        assert got[k] == pytest.approx(2 * r / (1 + r), abs=1e-12)


def test_internal_consistency_needs_two_repeats():
    assert np.all(np.isnan(internal_consistency(np.ones((10, 1, 3)))))


# -- explained variance on a known linear ground truth --------------------------------------------
def test_linear_ground_truth_is_explained_and_r_reaches_sqrt_ceiling():
    x, responses = linear_population()
    res = explained_variance(x, responses, seed=0)
    assert res["n_neurons_used"] == 20 and res["n_neurons_excluded"] == 0
    # the ceiling is what theory says (R s2 / (R s2 + n2) with s2 ~ 1, n2 = 2 -> ~0.67)
    assert 0.55 < res["median_ceiling"] < 0.78
    assert res["median_ev"] > 0.6
    # a linear model of a linear truth gets (nearly) all explainable variance: r ~ sqrt(ceiling)
    ratio = res["r"] / np.sqrt(res["ceiling"])
    assert 0.9 < float(np.median(ratio)) < 1.1
    assert abs(res["median_r"] - math.sqrt(res["median_ceiling"])) < 0.08
    np.testing.assert_allclose(res["ev"], np.maximum(res["r"], 0) ** 2 / res["ceiling"])


def test_shuffled_control_explains_nothing():
    x, responses = linear_population()
    perm = np.random.default_rng(7).permutation(len(x))
    res = explained_variance(x[perm], responses, seed=0)
    assert res["median_ev"] < 0.05
    assert abs(res["median_r"]) < 0.1


@pytest.mark.parametrize("reduction", ["pca", "random"])
def test_reduction_of_wide_features_keeps_signal_and_does_not_leak(reduction):
    """50 informative dimensions spread over 1500 features, plus 500 independent noise features,
    reduced to 500: the signal survives, and with the responses shuffled across images nothing does
    (the PCA is fitted on all images' features, but never sees a response)."""
    x, responses = linear_population()
    rng = np.random.default_rng(11)
    wide = np.concatenate([x @ rng.standard_normal((50, 1500)), rng.standard_normal((len(x), 500))], axis=1)
    res = explained_variance(wide, responses, seed=0, max_features=500, reduction=reduction)
    assert res["median_ev"] > 0.6
    perm = np.random.default_rng(7).permutation(len(x))
    ctrl = explained_variance(wide, responses[perm], seed=0, max_features=500, reduction=reduction)
    assert ctrl["median_ev"] < 0.05
    with pytest.raises(ValueError, match="reduction"):
        pls_predictions(wide, responses.mean(axis=1), max_features=500, reduction="umap")


def test_low_ceiling_neurons_are_excluded_and_counted():
    x, responses = linear_population(n_dead=3)
    res = explained_variance(x, responses, seed=0)
    assert res["n_neurons_used"] == 20
    assert res["n_neurons_excluded"] == 3
    assert not res["used"][-3:].any() and res["used"][:20].all()
    assert np.all(res["ceiling"][-3:] <= 0.1)
    assert np.all(np.isnan(res["ev"][-3:])) and np.all(np.isfinite(res["ev"][:20]))
    # the medians are over the used neurons only
    assert res["median_ev"] == pytest.approx(float(np.median(res["ev"][:20])))


def test_same_seed_same_result_other_seed_other_folds():
    x, responses = linear_population(n_images=200, n_neurons=8)
    a = explained_variance(x, responses, seed=5)
    b = explained_variance(x, responses, seed=5)
    c = explained_variance(x, responses, seed=6)
    for key in ("r", "ceiling", "ev"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["median_ev"] == b["median_ev"]
    assert not np.array_equal(a["r"], c["r"])
    p1 = pls_predictions(x, responses.mean(axis=1), seed=1)
    p2 = pls_predictions(x, responses.mean(axis=1), seed=1)
    np.testing.assert_array_equal(p1, p2)


def test_pls_predictions_are_out_of_fold():
    """Targets that are pure noise cannot be predicted from features they are independent of; an
    in-sample fit with 25 components of 50 features would correlate ~0.35 with them."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((300, 50)), rng.standard_normal((300, 10))
    pred = pls_predictions(x, y, seed=0)
    assert pred.shape == y.shape
    r = [np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(10)]
    assert abs(float(np.mean(r))) < 0.1


def test_missing_trial_average_is_tolerated():
    x, responses = linear_population(n_images=200, n_neurons=6)
    responses[5, :, 2] = np.nan  # neuron 2 never recorded on image 5
    res = explained_variance(x, responses, seed=0)
    assert np.all(np.isfinite(res["r"]))
    assert res["median_ev"] > 0.5


def test_best_layer_picks_highest_median_ev():
    frame = pd.DataFrame({"layer": ["stem", "layer1", "layer2"], "median_ev": [0.2, 0.5, float("nan")]})
    assert best_layer(frame)["layer"] == "layer1"
    assert best_layer(frame, candidates=["stem", "layer2"])["layer"] == "stem"


# -- a network and a simulated V1 recording -------------------------------------------------------
@pytest.fixture(scope="module")
def simulated_recording():
    from neurobias.data.synthetic import make_stimulus_images
    from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
    images = make_stimulus_images(3, 400, 32)
    population = SimulatedV1(V1PopulationParams(n_neurons=60, image_size=32), seed=3)
    return population.record(images, repeats=4, seed=3)


def test_layer_explained_variance_of_random_resnet(simulated_recording):
    from neurobias.models import build_classifier
    from neurobias.neural.recording import Recording
    torch.manual_seed(0)
    model = build_classifier("resnet18", 10, 1, [0.5], [0.25], width=4)
    layers = ["stem", "layer1", "layer2", "layer3", "layer4"]
    frame = layer_explained_variance(model, simulated_recording, layers, seed=0, image_size=32, channels=1)
    assert list(frame["layer"]) == layers
    assert (frame["n_images"] == 400).all()
    for col in ("median_ev", "median_r", "median_ceiling", "brainscore_ev"):
        assert np.isfinite(frame[col].to_numpy(dtype=float)).all(), col
    assert (frame["n_neurons_used"] > 30).all()
    assert model.training  # built in train mode; layer_explained_variance restores the mode

    rec = simulated_recording
    perm = np.random.default_rng(0).permutation(rec.n_images)
    shuffled = Recording(rec.images, rec.responses[perm], rec.image_ids, rec.tiers, dict(rec.meta))
    ctrl = layer_explained_variance(model, shuffled, ["stem", "layer1"], seed=0, image_size=32, channels=1)
    real = frame.set_index("layer")
    for _, row in ctrl.iterrows():
        # A random network explains little of the simulated V1 (median ev ~0.04-0.1 at 400
        # stimuli; a Gabor-energy population of other neurons reaches ~0.58), but it is signal:
        # the shuffled control's held-out predictions are uncorrelated with the responses.
        assert row["median_ev"] < 0.01
        assert abs(row["median_r"]) < 0.1
        assert real.loc[row["layer"], "median_ev"] > 0.02
        assert real.loc[row["layer"], "median_r"] > row["median_r"] + 0.1
    assert best_layer(frame)["median_ev"] == frame["median_ev"].max()


def test_layer_explained_variance_max_images_and_pooling(simulated_recording):
    from neurobias.models import build_classifier
    torch.manual_seed(0)
    model = build_classifier("resnet18", 10, 1, [0.5], [0.25], width=4).eval()
    frame = layer_explained_variance(model, simulated_recording, ["stem"], max_images=150, n_folds=5,
                                     image_size=32, pool_to=4)
    assert frame.loc[0, "n_images"] == 150
    assert frame.loc[0, "n_features"] == 4 * 4 * 4  # width 4, pooled to 4 x 4
    with pytest.raises(ValueError, match="unknown layer"):
        layer_explained_variance(model, simulated_recording, ["fc"], image_size=32)


def test_explained_variance_runs_on_a_cadena_format_recording(tmp_path):
    """The Cadena et al. 2019 monkey V1 data (140 x 140 grey images, NaN trials) through the same
    code path the workflow uses: converted to a Recording, scored by layer_explained_variance."""
    import hashlib

    from neurobias.models import build_classifier
    from neurobias.neural.cadena import cadena_recording
    from test_li2019 import cadena_zip

    blob = cadena_zip(tmp_path / "cadena.zip", n=80, neurons=6, repeats=4)
    rec = cadena_recording(tmp_path / "cadena.zip", sha256=hashlib.sha256(blob).hexdigest())
    torch.manual_seed(0)
    model = build_classifier("resnet18", 10, 1, [0.5], [0.25], width=4)
    frame = layer_explained_variance(model, rec, ["stem", "layer1"], n_components=3, n_folds=4,
                                     image_size=32, channels=1)
    assert list(frame["layer"]) == ["stem", "layer1"]
    assert frame["n_images"].eq(80).all()
    assert np.isfinite(frame["median_r"]).all() and (frame["n_neurons_used"] >= 1).all()
