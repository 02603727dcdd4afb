"""Tests for neurobias.regularisers.similarity (Li et al. 2019's similarity regulariser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurobias.neural.similarity import feature_similarity, neural_similarity, shuffle_similarity
from neurobias.regularisers.similarity import SimilarityRegulariser, similarity_loss
from test_neural_similarity import loop_feature_similarity


def hand_similarity_loss(s_cnn: np.ndarray, s_target: np.ndarray) -> float:
    c = 1 - 1e-4
    n = len(s_cnn)
    terms = [(np.arctanh(np.clip(s_cnn[i, j], -c, c)) - np.arctanh(np.clip(s_target[i, j], -c, c))) ** 2
             for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(terms))


# -- similarity_loss -----------------------------------------------------------------------------
def test_similarity_loss_matches_arctanh_hand_computation():
    rng = np.random.default_rng(14)
    s_cnn = feature_similarity(torch.from_numpy(rng.normal(size=(6, 8)).astype(np.float32)))
    s_target = torch.from_numpy(neural_similarity(rng.normal(size=(6, 10))))
    loss = similarity_loss(s_cnn, s_target)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(hand_similarity_loss(s_cnn.numpy(), s_target.numpy()), rel=1e-4)


def test_similarity_loss_ignores_diagonal_and_lower_triangle_and_clamps():
    s_target = torch.tensor([[1.0, 0.5, -0.2], [0.9, 1.0, 0.0], [0.3, -0.7, 1.0]])
    s_cnn = s_target.clone()
    s_cnn.diagonal().fill_(-1.0)   # diagonal differs: must not count
    s_cnn[1, 0] = -0.9             # lower triangle differs: must not count
    assert similarity_loss(s_cnn, s_target).item() == pytest.approx(0.0, abs=1e-10)
    # a saturated +1 is clamped, so the loss stays finite and equals the hand value
    s_cnn = s_target.clone()
    s_cnn[0, 1] = 1.0
    loss = similarity_loss(s_cnn, s_target)
    assert torch.isfinite(loss)
    expected = (np.arctanh(1 - 1e-4) - np.arctanh(0.5)) ** 2 / 3
    assert loss.item() == pytest.approx(expected, rel=1e-3)


# -- SimilarityRegulariser -----------------------------------------------------------------------
def _regulariser(n=30, batch=8, taps=("layer1", "layer2", "layer3")):
    rng = np.random.default_rng(15)
    target = neural_similarity(rng.normal(size=(n, 12)))
    train_rows = np.arange(0, n, 2)            # even rows are the train tier
    return SimilarityRegulariser(target, train_rows, taps, stimulus_batch_size=batch), target, train_rows


def test_regulariser_gamma_is_a_softmax_summing_to_one():
    reg, _, _ = _regulariser()
    g = reg.gamma
    assert g.shape == (3,)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(g.detach().numpy(), 1 / 3, atol=1e-7)  # w initialised at 0
    with torch.no_grad():
        reg.layer_logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
    g = reg.gamma.detach().numpy()
    e = np.exp([2.0, -1.0, 0.5])
    np.testing.assert_allclose(g, e / e.sum(), rtol=1e-6)
    assert g.sum() == pytest.approx(1.0, abs=1e-6)
    log = reg.log()
    assert set(log) == {"gamma_layer1", "gamma_layer2", "gamma_layer3"}
    assert log["gamma_layer1"] == pytest.approx(g[0], rel=1e-6)


def test_regulariser_requires_a_layer():
    with pytest.raises(ValueError):
        SimilarityRegulariser(np.eye(3), np.arange(3), ())


def test_regulariser_loss_matches_hand_computation_and_gradients_flow():
    reg, target, _ = _regulariser()
    rows = torch.tensor([0, 4, 10, 2, 8])
    gen = torch.Generator().manual_seed(0)
    feats = {t: torch.randn(5, 3, 4, 4, generator=gen, requires_grad=True) for t in reg.taps}
    with torch.no_grad():
        reg.layer_logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
    loss = reg.loss(feats, rows)

    g = torch.softmax(torch.tensor([0.3, -0.2, 0.1]), 0).numpy()
    s_cnn = sum(g[i] * loop_feature_similarity(feats[t].detach().numpy()) for i, t in enumerate(reg.taps))
    r = rows.numpy()
    expected = hand_similarity_loss(s_cnn, target[np.ix_(r, r)])
    assert loss.item() == pytest.approx(expected, rel=1e-4)

    loss.backward()
    assert reg.layer_logits.grad is not None
    assert reg.layer_logits.grad.abs().sum() > 0
    assert torch.isfinite(reg.layer_logits.grad).all()
    # softmax: the gradient w.r.t. the logits sums to zero
    assert reg.layer_logits.grad.sum().item() == pytest.approx(0.0, abs=1e-6)
    for t in reg.taps:
        assert feats[t].grad is not None and feats[t].grad.abs().sum() > 0


def test_regulariser_loss_is_zero_when_features_reproduce_the_target():
    # features whose centred cosine similarity equals the target: use the z-scored responses
    rng = np.random.default_rng(16)
    resp = rng.normal(size=(10, 6))
    target = neural_similarity(resp)
    reg = SimilarityRegulariser(target, np.arange(10), ("a", "b"), stimulus_batch_size=10)
    rows = torch.arange(10)
    z = (resp - resp.mean(0)) / resp.std(0)
    f = torch.from_numpy(z.astype(np.float32))
    assert reg.loss({"a": f, "b": f}, rows).item() < 1e-4
    # and a shuffled target is far off
    reg_sh = SimilarityRegulariser(shuffle_similarity(target, 0), np.arange(10), ("a", "b"), 10)
    assert reg_sh.loss({"a": f, "b": f}, rows).item() > 0.05


def test_stimulus_batch_samples_only_train_rows_and_is_seeded():
    reg, _, train_rows = _regulariser(n=30, batch=8)
    allowed = set(train_rows.tolist())
    seen = set()
    for seed in range(20):
        rows = reg.stimulus_batch(torch.Generator().manual_seed(seed))
        assert rows.dtype == torch.long and rows.shape == (8,)
        assert set(rows.tolist()) <= allowed
        assert len(set(rows.tolist())) == 8      # no repeats within a batch
        seen |= set(rows.tolist())
    assert seen == allowed                       # and every train row gets drawn eventually
    a = reg.stimulus_batch(torch.Generator().manual_seed(42))
    b = reg.stimulus_batch(torch.Generator().manual_seed(42))
    c = reg.stimulus_batch(torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stimulus_batch_size_is_capped_by_train_rows():
    rng = np.random.default_rng(17)
    target = neural_similarity(rng.normal(size=(10, 5)))
    reg = SimilarityRegulariser(target, np.array([1, 3, 5]), ("x",), stimulus_batch_size=32)
    rows = reg.stimulus_batch(torch.Generator().manual_seed(0))
    assert sorted(rows.tolist()) == [1, 3, 5]


def test_regulariser_buffers_are_not_saved_but_logits_are():
    reg, _, _ = _regulariser()
    state = reg.state_dict()
    assert "layer_logits" in state
    assert "target" not in state and "train_rows" not in state
