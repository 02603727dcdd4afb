"""Tests for neurobias.regularisers.oracle (Safarani et al. 2021's oracle): its consistency losses."""

import numpy as np
import pytest
import torch

from test_faithful_methods import oracle


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
