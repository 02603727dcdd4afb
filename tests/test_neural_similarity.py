"""Tests for neurobias.neural.similarity: similarity matrices (Li et al. 2019's S_neural and the
network's), shuffles, split-half reliability and the target diagnostics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from neurobias.neural.similarity import (
    feature_similarity,
    neural_similarity,
    off_diagonal,
    shuffle_responses,
    shuffle_similarity,
    split_half_reliability,
    target_diagnostics,
)


# -- hand computations ---------------------------------------------------------------------------
def loop_neural_similarity(r: np.ndarray) -> np.ndarray:
    """Li 2019 Eq. 1-2 with explicit loops.

    Per neuron: mean and population SD (ddof=0) over the images where it was recorded; a
    recorded response becomes (r - mean) / SD, a missing one becomes 0 (the docstring: "a missing
    response contributes zero to both the dot product and the norms (after z-scoring, i.e. it is
    treated as the neuron's mean)"). Neurons with zero SD carry no information and are skipped.
    Then S_ij = cosine of the population vectors of images i and j.
    """
    n, k = r.shape
    z = np.zeros((n, k))
    for kk in range(k):
        vals = [r[i, kk] for i in range(n) if not math.isnan(r[i, kk])]
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))
        for i in range(n):
            if sd > 0 and not math.isnan(r[i, kk]):
                z[i, kk] = (r[i, kk] - m) / sd
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            dot = sum(z[i, kk] * z[j, kk] for kk in range(k))
            ni = math.sqrt(sum(z[i, kk] ** 2 for kk in range(k)))
            nj = math.sqrt(sum(z[j, kk] ** 2 for kk in range(k)))
            s[i, j] = dot / (ni * nj)
    return s


def loop_feature_similarity(a: np.ndarray) -> np.ndarray:
    """Li 2019 Eq. 9: z-score each unit over the batch (as each neuron for S_neural), then cosine
    between images."""
    b = a.reshape(len(a), -1).astype(np.float64)
    b = (b - b.mean(axis=0, keepdims=True)) / b.std(axis=0, keepdims=True)
    s = np.zeros((len(b), len(b)))
    for i in range(len(b)):
        for j in range(len(b)):
            s[i, j] = b[i] @ b[j] / (np.linalg.norm(b[i]) * np.linalg.norm(b[j]))
    return s


def hand_zscored_cosine(a: np.ndarray) -> np.ndarray:
    b = a.reshape(len(a), -1).astype(np.float64)
    z = (b - b.mean(0)) / b.std(0)          # population SD over the batch, as for the neurons
    n = np.linalg.norm(z, axis=1)
    return np.array([[z[i] @ z[j] / (n[i] * n[j]) for j in range(len(z))] for i in range(len(z))])


# -- neural_similarity ---------------------------------------------------------------------------
def test_neural_similarity_matches_double_loop():
    rng = np.random.default_rng(0)
    r = rng.gamma(2.0, 2.0, (7, 5)) + rng.normal(0, 1, (1, 5))
    s = neural_similarity(r)
    assert s.shape == (7, 7) and s.dtype == np.float32
    np.testing.assert_allclose(s, loop_neural_similarity(r), atol=1e-6)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-6)
    np.testing.assert_allclose(s, s.T, atol=1e-7)


def test_neural_similarity_is_invariant_to_per_neuron_affine_maps():
    # A neuron with a huge scale must not dominate: rescaling / shifting a neuron changes nothing.
    rng = np.random.default_rng(1)
    r = rng.normal(size=(6, 4))
    r2 = r * np.array([1.0, 1000.0, 0.01, 5.0]) + np.array([3.0, -7.0, 100.0, 0.0])
    np.testing.assert_allclose(neural_similarity(r), neural_similarity(r2), atol=1e-5)
    # zero-variance neurons are skipped rather than producing NaN
    r3 = np.concatenate([r, np.full((6, 1), 2.5)], axis=1)
    np.testing.assert_allclose(neural_similarity(r3), neural_similarity(r), atol=1e-6)


def test_neural_similarity_two_images_are_anticorrelated():
    # with two images, z-scoring makes every neuron +-1 with opposite signs: S_01 = -1
    r = np.array([[1.0, 5.0, 2.0], [3.0, 4.0, 0.0]])
    s = neural_similarity(r)
    np.testing.assert_allclose(s, [[1, -1], [-1, 1]], atol=1e-6)


def test_neural_similarity_nan_treated_as_neuron_mean_after_zscoring():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(8, 6))
    r[1, 2] = np.nan
    r[5, 0] = np.nan
    r[5, 4] = np.nan
    s = neural_similarity(r)
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, loop_neural_similarity(r), atol=1e-6)

    # equivalently: mean and SD over the recorded images, then z of a missing entry is 0
    mean, sd = np.nanmean(r, axis=0), np.nanstd(r, axis=0)
    z = np.nan_to_num((r - mean) / sd, nan=0.0)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(s, z @ z.T, atol=1e-6)

    # this is *not* "impute the mean, then z-score": imputing shrinks the SD of the neurons with
    # missing values, which would weight them more; check that the rule above is the one used
    imputed = np.where(np.isnan(r), mean, r)
    zi = (imputed - imputed.mean(axis=0)) / imputed.std(axis=0)
    zi /= np.linalg.norm(zi, axis=1, keepdims=True)
    assert not np.allclose(s, zi @ zi.T, atol=1e-4)


def test_neural_similarity_all_nan_neuron_is_ignored():
    rng = np.random.default_rng(3)
    r = rng.normal(size=(5, 4))
    r_nan = np.concatenate([r, np.full((5, 1), np.nan)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: mean of an empty slice
        s = neural_similarity(r_nan)
    np.testing.assert_allclose(s, neural_similarity(r), atol=1e-6)


# -- feature_similarity --------------------------------------------------------------------------
def test_feature_similarity_matches_hand_computation():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 3, 2, 2)).astype(np.float32) + 2.0  # offset: centring matters
    s = feature_similarity(torch.from_numpy(a))
    assert s.shape == (5, 5)
    np.testing.assert_allclose(s.numpy(), loop_feature_similarity(a), atol=1e-5)
    # without centring, the +2 offset would make every cosine large and positive; z-scored
    # vectors sum to zero over the batch, so some similarities must be negative
    assert (s.numpy() < 0).any()


def test_feature_similarity_is_invariant_to_a_common_offset_and_scale():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(rng.normal(size=(6, 10)).astype(np.float32))
    offset = torch.from_numpy(rng.normal(size=(1, 10)).astype(np.float32)) * 10
    np.testing.assert_allclose(feature_similarity(a).numpy(), feature_similarity(3 * a + offset).numpy(),
                               atol=1e-5)


def test_feature_similarity_handles_int_input_and_constant_image():
    a = torch.tensor([[1, 2], [3, 4], [2, 3]])   # third row equals the batch mean
    s = feature_similarity(a)
    assert s.dtype == torch.float32
    assert torch.isfinite(s).all()
    assert s[2].abs().max() == 0
    assert s[0, 1].item() == pytest.approx(-1.0, abs=1e-6)


# Li's network similarity: units z-scored like the neurons
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


# -- shuffle_similarity, shuffle_responses --------------------------------------------------------
def _recover_permutation(s_shuffled: np.ndarray, s: np.ndarray) -> np.ndarray:
    """p with s_shuffled[i] a rearrangement of s[p[i]]: match each row's sorted values."""
    key = {tuple(np.round(np.sort(row), 6)): j for j, row in enumerate(s)}
    assert len(key) == len(s), "rows must be distinguishable for this test"
    return np.array([key[tuple(np.round(np.sort(row), 6))] for row in s_shuffled])


def test_shuffle_similarity_is_a_symmetric_permutation():
    rng = np.random.default_rng(6)
    s = neural_similarity(rng.normal(size=(20, 15)))
    sh = shuffle_similarity(s, seed=0)
    assert sh.shape == s.shape
    # same multiset of values, still symmetric with unit diagonal
    np.testing.assert_array_equal(np.sort(sh.ravel()), np.sort(s.ravel()))
    np.testing.assert_array_equal(sh, sh.T)
    np.testing.assert_allclose(np.diag(sh), 1.0, atol=1e-6)
    p = _recover_permutation(sh, s)
    assert sorted(p.tolist()) == list(range(20))      # a permutation
    assert not np.array_equal(p, np.arange(20))       # and not the identity
    np.testing.assert_array_equal(sh, s[np.ix_(p, p)])  # the same one on rows and columns


def test_shuffle_similarity_on_a_generic_matrix():
    # distinct diagonal identifies p directly: diag(S')_i = S_{p(i) p(i)}
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 12))
    s = a + a.T + np.diag(np.arange(12) * 10.0)
    sh = shuffle_similarity(s, seed=3)
    p = np.array([int(np.argmin(np.abs(np.diag(s) - d))) for d in np.diag(sh)])
    assert sorted(p.tolist()) == list(range(12))
    for i in range(12):
        for j in range(12):
            assert sh[i, j] == s[p[i], p[j]]


def test_shuffle_similarity_depends_on_seed():
    rng = np.random.default_rng(8)
    s = neural_similarity(rng.normal(size=(20, 10)))
    assert np.array_equal(shuffle_similarity(s, 1), shuffle_similarity(s, 1))
    assert not np.array_equal(shuffle_similarity(s, 1), shuffle_similarity(s, 2))


def test_shuffled_responses_keep_every_row():
    r = np.arange(40, dtype=np.float32).reshape(10, 4)
    s = shuffle_responses(r, 0)
    assert sorted(map(tuple, s)) == sorted(map(tuple, r)) and not np.array_equal(s, r)
    assert np.array_equal(s, shuffle_responses(r, 0)) and not np.array_equal(s, shuffle_responses(r, 1))


# -- off_diagonal --------------------------------------------------------------------------------
def test_off_diagonal_full_and_sub_matrix():
    s = np.arange(25, dtype=float).reshape(5, 5)   # s[i, j] = 5 i + j
    assert off_diagonal(s).tolist() == [1, 2, 3, 4, 7, 8, 9, 13, 14, 19]
    rows = np.array([3, 1, 4])
    # sub-matrix on rows (in the given order), upper triangle row by row:
    # (3,1), (3,4), (1,4)
    assert off_diagonal(s, rows).tolist() == [s[3, 1], s[3, 4], s[1, 4]]
    assert off_diagonal(s, np.array([2])).size == 0


# -- split_half_reliability, target_diagnostics ----------------------------------------------------
def test_split_half_reliability_high_for_low_noise_population():
    rng = np.random.default_rng(9)
    signal = rng.gamma(2.0, 2.0, (40, 1, 30))                       # [N, 1, K] true responses
    responses = signal + 0.2 * rng.standard_normal((40, 10, 30))     # 10 repeats, small noise
    rel = split_half_reliability(responses, seed=0)
    assert rel > 0.8
    assert rel <= 1.0 + 1e-9


def test_split_half_reliability_low_for_pure_noise():
    rng = np.random.default_rng(10)
    responses = rng.standard_normal((40, 10, 30))
    assert split_half_reliability(responses, seed=0) < 0.3


def test_split_half_reliability_spearman_brown_and_edge_cases():
    rng = np.random.default_rng(11)
    signal = rng.normal(size=(25, 1, 20))
    responses = signal + 1.0 * rng.standard_normal((25, 2, 20))
    # with two repeats the halves are the single repeats 0 and 1 whatever the permutation, and a
    # correlation is symmetric, so the value can be recomputed by hand: r -> 2 r / (1 + r)
    s1 = loop_neural_similarity(responses[:, 0])
    s2 = loop_neural_similarity(responses[:, 1])
    iu = np.triu_indices(25, k=1)
    r = np.corrcoef(s1[iu], s2[iu])[0, 1]
    assert 0.1 < r < 0.9  # a regime where the correction matters
    for seed in (0, 1, 2):
        assert split_half_reliability(responses, seed=seed) == pytest.approx(2 * r / (1 + r), abs=1e-4)
    assert math.isnan(split_half_reliability(responses[:, :1]))


def test_split_half_reliability_tolerates_missing_trials():
    rng = np.random.default_rng(12)
    signal = rng.gamma(2.0, 2.0, (30, 1, 25))
    responses = signal + 0.2 * rng.standard_normal((30, 8, 25))
    responses[rng.random(responses.shape) < 0.2] = np.nan
    responses[:, 0] = np.where(np.isnan(responses[:, 0]), signal[:, 0], responses[:, 0])
    rel = split_half_reliability(responses, seed=1)
    assert np.isfinite(rel) and rel > 0.8


def test_target_diagnostics_shapes_and_values():
    rng = np.random.default_rng(13)
    signal = rng.gamma(2.0, 2.0, (20, 1, 15))
    responses = signal + 0.1 * rng.standard_normal((20, 4, 15))
    model = neural_similarity(signal[:, 0])
    targets = {"model": model, "shuffle": shuffle_similarity(model, 0)}
    test_rows = np.arange(15, 20)
    out = target_diagnostics(targets, test_rows, responses)
    assert out["n_images"] == 20 and out["n_test_images"] == 5
    off = off_diagonal(model)
    assert out["model"]["offdiag_mean"] == pytest.approx(off.mean(), abs=1e-6)
    assert out["model"]["offdiag_sd"] == pytest.approx(off.std(), abs=1e-6)
    # shuffling keeps the value distribution
    assert out["shuffle"]["offdiag_sd"] == pytest.approx(out["model"]["offdiag_sd"], abs=1e-6)
    assert out["model"]["heldout_r_with_data"] > 0.9
    assert out["data_split_half_reliability"] > 0.8


# -- cosine_similarity_rows ----------------------------------------------------------------------
def test_cosine_rows_are_torch_normalize_bit_for_bit():
    from neurobias.neural.similarity import cosine_similarity_rows
    a = torch.randn(9, 30, generator=torch.Generator().manual_seed(0))
    a[3] = 0.0  # a row whose norm is below eps: the clamp, not a division by zero
    n = torch.nn.functional.normalize(a, dim=1, eps=1e-8)
    assert torch.equal(cosine_similarity_rows(a), n @ n.T)
