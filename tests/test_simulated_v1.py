"""Tests for neurobias.neural.simulated_v1: the seeded model V1 population (positive control)."""

from __future__ import annotations

import numpy as np
import pytest

from neurobias.data.synthetic import make_stimulus_images
from neurobias.neural.recording import Recording
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams

SIZE = 32
N_ORI = 16
N_PHASE = 8
ORIENTATIONS = np.arange(N_ORI) * np.pi / N_ORI
PHASES = np.arange(N_PHASE) * 2 * np.pi / N_PHASE
_YY, _XX = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")


def grating(theta: float, sf: float, phase: float, contrast: float = 100.0, mean: float = 128.0):
    """Full-field sinusoidal grating, uint8 grey [H, W].

    ``theta`` is the direction of the grating's wave vector in (x = column, y = row) coordinates,
    the same convention as a neuron's ``orientation`` (its carrier varies along
    u = cos(theta) x + sin(theta) y).
    """
    u = _XX * np.cos(theta) + _YY * np.sin(theta)
    return np.rint(mean + contrast * np.cos(2 * np.pi * sf * u + phase)).astype(np.uint8)


def circular_difference(a, b, period=np.pi):
    d = np.abs(np.asarray(a) - np.asarray(b)) % period
    return np.minimum(d, period - d)


@pytest.fixture(scope="module")
def stimuli():
    return make_stimulus_images(0, 100, image_size=SIZE)


@pytest.fixture(scope="module")
def v1(stimuli):
    model = SimulatedV1(V1PopulationParams(), seed=0)
    model.mean_rates(stimuli)  # fix the gains on natural-ish images, as the pipeline does
    return model


@pytest.fixture(scope="module")
def phase_responses_at_preference(v1):
    """Rates of every neuron to gratings at its own orientation and spatial frequency, [K, phases]."""
    k = v1.params.n_neurons
    images = np.array([grating(v1.orientation[i], v1.spatial_frequency[i], ph)
                       for i in range(k) for ph in PHASES])
    rates = v1.mean_rates(images).reshape(k, N_PHASE, k)
    return rates[np.arange(k), :, np.arange(k)]


# -- construction --------------------------------------------------------------------------------

def test_population_parameters_are_in_range(v1):
    p = v1.params
    k = p.n_neurons
    assert v1.orientation.shape == (k,) and np.all((v1.orientation >= 0) & (v1.orientation < np.pi))
    assert v1.centre.shape == (k, 2)
    lo, hi = p.position_margin * p.image_size, (1 - p.position_margin) * p.image_size
    assert np.all((v1.centre >= lo) & (v1.centre <= hi))
    assert np.all(v1.spatial_frequency > 0)
    # log-normal around sf_median: the median of the sample is close to it
    assert np.median(v1.spatial_frequency) == pytest.approx(p.sf_median, rel=0.1)
    np.testing.assert_allclose(v1.sigma * v1.spatial_frequency, p.envelope_periods)
    # about complex_fraction of the cells are complex (binomial SD ~ 0.03 for 240 cells)
    assert abs(v1.is_complex.mean() - p.complex_fraction) < 0.1


def test_filters_are_zero_mean_unit_norm(v1):
    k, npx = v1.params.n_neurons, SIZE * SIZE
    for g in (v1.even, v1.odd):
        assert g.shape == (k, npx)
        np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-3)
        np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_population_different_seed_different():
    a, b = SimulatedV1(V1PopulationParams(n_neurons=50), 7), SimulatedV1(V1PopulationParams(n_neurons=50), 7)
    c = SimulatedV1(V1PopulationParams(n_neurons=50), 8)
    assert np.array_equal(a.orientation, b.orientation) and np.array_equal(a.even, b.even)
    assert not np.allclose(a.orientation, c.orientation)


# -- drive and rates -----------------------------------------------------------------------------

def test_drive_ignores_mean_luminance_and_is_zero_for_a_blank_image(v1):
    g = grating(0.3, 0.09, 0.5, contrast=60, mean=100)
    shifted = grating(0.3, 0.09, 0.5, contrast=60, mean=140)  # same contrast pattern, brighter
    np.testing.assert_allclose(v1.drive(g[None]), v1.drive(shifted[None]), rtol=1e-4, atol=1e-6)
    blank = np.full((1, SIZE, SIZE), 90, dtype=np.uint8)
    assert np.all(v1.drive(blank) == 0)


def test_mean_rates_calibrated_to_mean_rate_and_gains_fixed_after_first_call(stimuli):
    params = V1PopulationParams(n_neurons=80)
    model = SimulatedV1(params, seed=3)
    rates = model.mean_rates(stimuli)
    assert rates.shape == (len(stimuli), 80) and rates.dtype == np.float32
    assert np.all(rates >= 0)
    # by construction, neuron k's mean over the calibration images is mean_rate * gain_jitter_k
    np.testing.assert_allclose(rates.mean(axis=0), params.mean_rate * model.gain_jitter, rtol=1e-3)
    # gains are not re-fitted on a later call: a subset gets the same rates (up to float32
    # matmul rounding; re-fitting on 10 images would move them by ~10 %)
    np.testing.assert_allclose(model.mean_rates(stimuli[:10]), rates[:10], rtol=2e-3, atol=1e-4)


# -- tuning --------------------------------------------------------------------------------------

def test_orientation_tuning_of_complex_cells(v1):
    """Phase-averaged response to gratings at sf_median peaks near each cell's orientation."""
    images = np.array([grating(th, v1.params.sf_median, ph) for th in ORIENTATIONS for ph in PHASES])
    rates = v1.mean_rates(images).reshape(N_ORI, N_PHASE, -1).mean(axis=1)   # [orientations, K]
    preferred = ORIENTATIONS[rates.argmax(axis=0)]
    err = circular_difference(preferred, v1.orientation)
    # 16 orientations are 11.25 deg apart, so a perfect cell is within 5.6 deg; allow 22.5 deg
    within = err <= np.deg2rad(22.5) + 1e-9
    assert within[v1.is_complex].mean() > 0.9
    assert within[~v1.is_complex].mean() > 0.9
    # and the tuning is real: orthogonal gratings drive complex cells much less
    ortho = ((np.rint((v1.orientation + np.pi / 2) / (np.pi / N_ORI))) % N_ORI).astype(int)
    r_pref = rates.max(axis=0)
    r_ortho = rates[ortho, np.arange(rates.shape[1])]
    assert np.median((r_ortho / r_pref)[v1.is_complex]) < 0.5


def test_complex_cells_are_phase_invariant(v1, phase_responses_at_preference):
    r = phase_responses_at_preference[v1.is_complex]
    cv = r.std(axis=1) / r.mean(axis=1)
    # energy model: cos^2 + sin^2 of a quadrature pair is constant in phase, up to the Gabor's
    # imperfect quadrature and the normalisation pool
    assert np.quantile(cv, 0.9) < 0.1
    assert cv.max() < 0.25


def test_simple_cells_are_phase_sensitive(v1, phase_responses_at_preference):
    r = phase_responses_at_preference[~v1.is_complex]
    cv = r.std(axis=1) / r.mean(axis=1)
    # half-wave rectified: at 8 phases the rate ~ max(cos(phi), 0)^(2 * 0.8) takes values
    # [1, .57, 0, 0, 0, 0, 0, .57] -> CV = 1.37 by hand; require well above the complex cells
    assert np.median(cv) > 1.0
    assert cv.min() > 0.7
    # and the response at the best phase vanishes at the opposite phase
    ratio = r.min(axis=1) / r.max(axis=1)
    assert np.all(ratio < 0.05)


# -- recording -----------------------------------------------------------------------------------

def test_poisson_variability_variance_equals_mean(v1, stimuli):
    rec = v1.record(stimuli[:40], repeats=60, seed=1)
    x = rec.responses.astype(np.float64)
    assert np.all(x == np.round(x)) and np.all(x >= 0)       # spike counts
    # pooled over images and neurons: sum of per-cell variances / sum of per-cell means ~ 1
    ratio = x.var(axis=1, ddof=1).sum() / x.mean(axis=1).sum()
    assert ratio == pytest.approx(1.0, abs=0.05)
    # and the trial average is an unbiased estimate of the noise-free rate
    rates = v1.mean_rates(stimuli[:40])
    assert x.mean(axis=1).mean() == pytest.approx(rates.mean(), rel=0.02)
    assert np.corrcoef(x.mean(axis=1).ravel(), rates.ravel())[0, 1] > 0.95


def test_same_seed_gives_identical_recording(stimuli):
    params = V1PopulationParams(n_neurons=60)
    kwargs = dict(repeats=4, seed=5, missing_fraction=0.2)
    a = SimulatedV1(params, 2).record(stimuli[:30], **kwargs)
    b = SimulatedV1(params, 2).record(stimuli[:30], **kwargs)
    np.testing.assert_array_equal(a.responses, b.responses)  # NaN positions included
    c = SimulatedV1(params, 2).record(stimuli[:30], repeats=4, seed=6, missing_fraction=0.2)
    assert not np.array_equal(np.nan_to_num(a.responses, nan=-1), np.nan_to_num(c.responses, nan=-1))


def test_record_is_a_valid_recording_with_requested_tiers(v1, stimuli, tmp_path):
    n = 50
    rec = v1.record(stimuli[:n], repeats=3, seed=0, test_fraction=0.2)
    assert isinstance(rec, Recording)
    rec.validate()
    assert rec.responses.shape == (n, 3, v1.params.n_neurons)
    assert rec.tiers.tolist() == ["train"] * 40 + ["test"] * 10
    assert np.array_equal(rec.image_ids, np.arange(n))
    assert np.array_equal(rec.images, stimuli[:n])
    assert rec.meta["source"] == "simulated_v1" and rec.meta["repeats"] == 3 and rec.meta["seed"] == 0
    assert not np.isnan(rec.responses).any()
    # it survives the file format's validation too
    rec.save(tmp_path / "v1.npz")
    back = Recording.load(tmp_path / "v1.npz")
    np.testing.assert_array_equal(back.responses, rec.responses)
    assert back.meta["params"]["n_neurons"] == v1.params.n_neurons


@pytest.mark.parametrize("n, fraction, n_test", [(30, 0.1, 3), (7, 0.3, 2), (40, 0.5, 20)])
def test_record_test_tier_is_the_last_fraction(v1, stimuli, n, fraction, n_test):
    rec = v1.record(stimuli[:n], repeats=2, seed=0, test_fraction=fraction)
    assert rec.tiers.tolist() == ["train"] * (n - n_test) + ["test"] * n_test


def test_record_missing_fraction(v1, stimuli):
    frac = 0.3
    repeats = 5
    rec = v1.record(stimuli[:60], repeats=repeats, seed=2, missing_fraction=frac)
    missing = np.isnan(rec.responses)
    # repeat 0 is always kept, so every image keeps a trial per neuron ...
    assert not missing[:, 0].any()
    # ... and the other repeats lose ~missing_fraction of their trials (60*4*240 = 57600 trials,
    # binomial SD ~ 0.002)
    assert missing[:, 1:].mean() == pytest.approx(frac, abs=0.01)
    # overall NaN fraction is therefore frac * (R - 1) / R
    assert missing.mean() == pytest.approx(frac * (repeats - 1) / repeats, abs=0.01)
    rec.validate()
    avg = rec.trial_average()
    assert not np.isnan(avg).any()


# -- noise robustness ----------------------------------------------------------------------------

def test_responses_are_more_robust_to_pixel_noise_than_pixels(v1, stimuli):
    """Per-image Pearson correlation, clean vs noisy, across neurons vs across pixels.

    Both numbers are scale-free "how much of this image's representation survives the noise"
    measures computed on one image at a time, so they are directly comparable: the pixel one is
    the input's own signal-to-noise (about sqrt(var_s / (var_s + 0.1^2)) for an image with pixel
    variance var_s); a representation that merely copied the pixels could not beat it. We use
    the noise-free rates (mean_rates) so that only the pixel noise, not Poisson noise, differs.
    The population pools many pixels through large, low-frequency receptive fields, so it should
    beat the pixels on nearly every image.
    """
    rng = np.random.default_rng(123)
    x = stimuli.astype(np.float64) / 255.0
    noisy = np.rint(np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1) * 255).astype(np.uint8)

    def rowwise_corr(a, b):
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))

    neural = rowwise_corr(v1.mean_rates(stimuli).astype(np.float64),
                          v1.mean_rates(noisy).astype(np.float64))
    pixels = rowwise_corr(stimuli.reshape(len(stimuli), -1).astype(np.float64),
                          noisy.reshape(len(noisy), -1).astype(np.float64))
    assert np.median(pixels) < 0.95          # sanity: the noise really is substantial
    assert np.median(neural) > np.median(pixels) + 0.05
    assert (neural > pixels).mean() > 0.7
