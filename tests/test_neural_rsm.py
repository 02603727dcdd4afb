"""Tests for neurobias.neural.rsm: RSMs against hand computations and the teacher variants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurobias.neural.rsm import feature_rsm, gaussian_responses, response_rsm, teacher_rsm
from neurobias.neural.similarity import off_diagonal


R = [[1.0, 2.0, 0.0, 1.0],
     [0.0, 1.0, 3.0, 1.0],
     [2.0, 0.0, 1.0, 2.0]]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def hand_cosine(a, b):
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def test_cosine_rsm_by_hand():
    # r0.r1 = 0+2+0+1 = 3, |r0|^2 = 1+4+0+1 = 6, |r1|^2 = 0+1+9+1 = 11
    # r0.r2 = 2+0+0+2 = 4, |r2|^2 = 4+0+1+4 = 9
    # r1.r2 = 0+0+3+2 = 5
    expected = np.array([[1.0, 3 / math.sqrt(66), 4 / (3 * math.sqrt(6))],
                         [3 / math.sqrt(66), 1.0, 5 / (3 * math.sqrt(11))],
                         [4 / (3 * math.sqrt(6)), 5 / (3 * math.sqrt(11)), 1.0]])
    got = response_rsm(np.array(R), "cosine")
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # the same numbers from the explicit dot-product helper
    for i in range(3):
        for j in range(3):
            assert got[i, j] == pytest.approx(hand_cosine(R[i], R[j]), rel=1e-6)


def test_pearson_rsm_equals_corrcoef_of_rows():
    np.testing.assert_allclose(response_rsm(np.array(R), "pearson"), np.corrcoef(np.array(R)), rtol=1e-6, atol=1e-7)
    # and it is not the cosine of the raw vectors (the rows have non-zero means)
    assert not np.allclose(response_rsm(np.array(R), "pearson"), response_rsm(np.array(R), "cosine"), atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "pearson"])
def test_feature_rsm_equals_response_rsm_on_flattened(metric):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 3, 4, 5, generator=g) + 0.3
    got = feature_rsm(feats, metric)
    assert got.shape == (6, 6)
    expected = response_rsm(feats.reshape(6, -1).numpy(), metric)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_nan_response_is_replaced_by_the_neurons_mean():
    r = [row[:] for row in R]
    r[1][2] = float("nan")
    # neuron 2 over the other images: (0 + 1) / 2 = 0.5
    filled = [row[:] for row in R]
    filled[1][2] = 0.5
    got = response_rsm(np.array(r), "cosine")
    assert np.isfinite(got).all()
    for i in range(3):
        for j in range(3):
            assert got[i, j] == pytest.approx(hand_cosine(filled[i], filled[j]), rel=1e-6)
    # r1 = [0, 1, 0.5, 1]: r0.r1 = 0+2+0+1 = 3, |r1|^2 = 2.25 -> cos = 3 / (sqrt(6) * 1.5)
    assert got[0, 1] == pytest.approx(3 / (math.sqrt(6) * 1.5), rel=1e-6)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="rsm_metric"):
        response_rsm(np.array(R), "spearman")
    with pytest.raises(ValueError, match="rsm_metric"):
        feature_rsm(torch.ones(2, 3), "spearman")


def test_a_never_recorded_neuron_is_left_out_of_the_rsm():
    r = np.random.default_rng(0).random((6, 4))
    with_gap = r.copy()
    with_gap[:, 2] = np.nan
    assert np.allclose(response_rsm(with_gap), response_rsm(np.delete(r, 2, axis=1)))


# -- teacher variants --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recording():
    rng = np.random.default_rng(12)
    return rng.gamma(2.0, 1.0, size=(14, 9)) + rng.uniform(0, 3, size=9)


def test_shuffled_teacher_keeps_values_breaks_pairs(recording):
    real = teacher_rsm("rsm_v1", recording)
    np.testing.assert_allclose(real, response_rsm(recording, "cosine"))
    shuffled = teacher_rsm("rsm_v1_shuffle", recording, seed=0)
    np.testing.assert_allclose(np.diag(shuffled), 1.0, rtol=1e-6)
    np.testing.assert_allclose(shuffled, shuffled.T)
    np.testing.assert_allclose(np.sort(off_diagonal(shuffled)), np.sort(off_diagonal(real)))
    assert np.mean(off_diagonal(shuffled) != off_diagonal(real)) > 0.5
    # other seed, other permutation
    assert not np.array_equal(teacher_rsm("rsm_v1_shuffle", recording, seed=1), shuffled)


MEANS = np.array([0.5, 2.0, 5.0, 10.0, 20.0])
SDS = np.array([0.1, 1.0, 0.5, 3.0, 2.0])
N_IMAGES = 4000


def test_gaussian_v1_stats_responses_match_each_neuron():
    rng = np.random.default_rng(5)
    rec = MEANS + SDS * rng.standard_normal((N_IMAGES, 5))
    rec[rng.random(rec.shape) < 0.05] = np.nan  # missing responses must not poison the statistics
    g = gaussian_responses(rec, seed=3)
    assert g.shape == rec.shape and np.isfinite(g).all()
    for k in range(5):
        col = rec[:, k]
        col = col[~np.isnan(col)]
        m = sum(col) / len(col)
        sd = math.sqrt(sum((v - m) ** 2 for v in col) / len(col))
        se_mean, se_sd = sd / math.sqrt(N_IMAGES), sd / math.sqrt(2 * (N_IMAGES - 1))
        assert abs(g[:, k].mean() - m) < 5 * se_mean, k
        assert abs(g[:, k].std() - sd) < 5 * se_sd, k
    # neuron order matters: neuron 4 (mean 20) is not neuron 0 (mean 0.5)
    assert g[:, 4].mean() > 15 and g[:, 0].mean() < 1


def test_gaussian_other_stats_responses_have_the_given_mean_and_sd():
    rng = np.random.default_rng(6)
    rec = MEANS + SDS * rng.standard_normal((N_IMAGES, 5))
    g = gaussian_responses(rec, seed=3, mean=10.0, std=1.0)
    se_mean, se_sd = 1.0 / math.sqrt(N_IMAGES), 1.0 / math.sqrt(2 * (N_IMAGES - 1))
    for k in range(5):
        assert abs(g[:, k].mean() - 10.0) < 5 * se_mean, k
        assert abs(g[:, k].std() - 1.0) < 5 * se_sd, k


def test_gaussian_other_rsm_is_nearly_flat():
    """x, y iid with K entries N(mu, s^2): x.y ~ K mu^2 and |x|^2 ~ K (mu^2 + s^2), so for large K
    cos(x, y) -> mu^2 / (mu^2 + s^2) = 100/101 and the cosine distance -> 1 - 100/101 = 1/101."""
    responses = np.random.default_rng(0).gamma(2.0, 1.0, size=(60, 400))
    expected = 1 - 100 / 101
    for seed in (0, 1):
        rsm = teacher_rsm("rsm_gaussian_other", responses, seed=seed, gaussian_other={"mean": 10.0, "std": 1.0})
        dist = 1 - off_diagonal(rsm).astype(np.float64)
        assert dist.mean() == pytest.approx(expected, rel=0.05)
    # the default non-V1 statistics are mean 10, SD 1
    np.testing.assert_array_equal(teacher_rsm("rsm_gaussian_other", responses, seed=0),
                                  teacher_rsm("rsm_gaussian_other", responses, seed=0,
                                              gaussian_other={"mean": 10.0, "std": 1.0}))
    # a larger SD gives a less flat teacher: mean 10, SD 5 -> 1 - 100/125 = 0.2
    wide = teacher_rsm("rsm_gaussian_other", responses, seed=0, gaussian_other={"mean": 10.0, "std": 5.0})
    assert (1 - off_diagonal(wide).astype(np.float64)).mean() == pytest.approx(0.2, rel=0.05)


def test_gaussian_v1_teacher_reproducible_per_seed(recording):
    a = teacher_rsm("rsm_gaussian_v1", recording, seed=3)
    b = teacher_rsm("rsm_gaussian_v1", recording, seed=3)
    c = teacher_rsm("rsm_gaussian_v1", recording, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, teacher_rsm("rsm_v1", recording))
    with pytest.raises(ValueError, match="rsm_v1"):
        teacher_rsm("model", recording)
