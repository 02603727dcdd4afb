"""Tests for neurobias.regularisers.rsm (Federer et al. 2020's RSM regulariser): rsm_cost over the
upper triangle, ratio and fixed weighting, the schedule, the arm's options and the target rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurobias.regularisers import RSMRegulariser, build_regulariser
from neurobias.regularisers.rsm import rsm_cost


NET = [[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]]
TARGET = [[1.0, 0.1, 0.4], [0.1, 1.0, 0.9], [0.4, 0.9, 1.0]]
# pairs (0,1), (0,2), (1,2): differences 0.4, -0.2, -0.6


def test_rsm_cost_l1_and_mse_by_hand():
    net, target = torch.tensor(NET), torch.tensor(TARGET)
    assert float(rsm_cost(net, target, "l1")) == pytest.approx((0.4 + 0.2 + 0.6) / 3, rel=1e-6)
    assert float(rsm_cost(net, target, "mse")) == pytest.approx((0.16 + 0.04 + 0.36) / 3, rel=1e-6)


@pytest.mark.parametrize("cost", ["l1", "mse"])
def test_rsm_cost_ignores_the_diagonal(cost):
    net, target = torch.tensor(NET), torch.tensor(TARGET)
    net2, target2 = net.clone(), target.clone()
    net2.fill_diagonal_(5.0)
    target2.fill_diagonal_(-3.0)
    assert float(rsm_cost(net2, target2, cost)) == pytest.approx(float(rsm_cost(net, target, cost)), rel=1e-7)
    # an off-diagonal change does change it
    net2[0, 2] = net2[2, 0] = 0.9
    assert float(rsm_cost(net2, target2, cost)) != pytest.approx(float(rsm_cost(net, target, cost)), rel=1e-3)


def test_rsm_cost_unknown_cost():
    with pytest.raises(ValueError, match="cost"):
        rsm_cost(torch.tensor(NET), torch.tensor(TARGET), "huber")


# -- ratio weighting, fixed weighting, schedule ------------------------------------------------
def _reg(**kw):
    return RSMRegulariser(np.eye(6, dtype=np.float32), np.arange(6), "V1", kw.pop("r", 0.3), **kw)


def _ce_and_penalty():
    w1 = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w2 = torch.tensor([1.5, 0.25], requires_grad=True)
    ce = (w1 ** 2).sum() + 0.1 * w1.sum()          # 5.25 + 0.15 = 5.4
    penalty = w2.exp().sum() * 0.1 + w2.prod()     # some differentiable positive scalar
    return w1, w2, ce, penalty


def test_ratio_weighting_value_and_gradient():
    r = 0.3
    reg = _reg(r=r, weighting="ratio")
    w1, w2, ce, penalty = _ce_and_penalty()
    total = reg.total_loss(ce, penalty)
    assert total.item() == pytest.approx((1 + r) * ce.item(), rel=1e-6)
    g1, g2 = torch.autograd.grad(total, (w1, w2))
    # reference gradients of ce and of the penalty alone
    w1r, w2r, ce_r, pen_r = _ce_and_penalty()
    dce = torch.autograd.grad(ce_r, w1r)[0]
    dpen = torch.autograd.grad(pen_r, w2r)[0]
    lam = r * ce_r.item() / pen_r.item()
    np.testing.assert_allclose(g2.numpy(), (lam * dpen).numpy(), rtol=1e-5)
    # lambda is held constant: the cross-entropy's gradient is not scaled by (1 + r)
    np.testing.assert_allclose(g1.numpy(), dce.numpy(), rtol=1e-6)


def test_fixed_weighting_value_and_gradient():
    r = 0.3
    reg = _reg(r=r, weighting="fixed")
    w1, w2, ce, penalty = _ce_and_penalty()
    total = reg.total_loss(ce, penalty)
    assert total.item() == pytest.approx(ce.item() + r * penalty.item(), rel=1e-6)
    g1, g2 = torch.autograd.grad(total, (w1, w2))
    w1r, w2r, ce_r, pen_r = _ce_and_penalty()
    np.testing.assert_allclose(g2.numpy(), (r * torch.autograd.grad(pen_r, w2r)[0]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(g1.numpy(), torch.autograd.grad(ce_r, w1r)[0].numpy(), rtol=1e-6)


def test_active_alternates_and_stops_at_until_epoch():
    alt = _reg(alternate=True)
    assert [alt.active(0, s) for s in range(6)] == [False, True, False, True, False, True]
    assert [alt.active(7, s) for s in range(4)] == [False, True, False, True]
    every = _reg(alternate=False)
    assert all(every.active(e, s) for e in range(3) for s in range(5))
    until = _reg(alternate=False, until_epoch=2)
    assert until.active(0, 0) and until.active(1, 3)
    assert not any(until.active(e, s) for e in (2, 3, 10) for s in range(4))
    both = _reg(alternate=True, until_epoch=2)
    assert [both.active(1, s) for s in range(4)] == [False, True, False, True]
    assert not any(both.active(2, s) for s in range(4))


def test_build_regulariser_passes_the_arm_options():
    arm = {"regulariser": "rsm", "target": "rsm_v1", "r": 0.7, "layer": "V2", "cost": "mse",
           "weighting": "fixed", "alternate": False, "until_epoch": 3, "stimulus_batch_size": 50}
    reg = build_regulariser(arm, np.eye(12, dtype=np.float32), np.arange(0, 12, 2), {"rsm_metric": "pearson"})
    assert isinstance(reg, RSMRegulariser)
    assert reg.taps == ("V2",) and reg.weight == 0.7
    assert (reg.metric, reg.cost, reg.weighting, reg.alternate, reg.until_epoch) == \
        ("pearson", "mse", "fixed", False, 3)
    assert reg.batch_size == 6  # capped at the number of training stimuli
    default = build_regulariser({"regulariser": "rsm", "target": "rsm_v1", "r": 0.1, "layer": "V1"},
                                np.eye(12, dtype=np.float32), np.arange(12))
    assert (default.metric, default.cost, default.weighting, default.alternate, default.until_epoch) == \
        ("cosine", "l1", "ratio", True, None)
    assert build_regulariser({"regulariser": "none"}, None, np.arange(3)) is None


def test_regulariser_loss_uses_the_target_rows():
    # target entries encode their own indices so a wrong sub-matrix would give another cost
    m = 8
    target = np.fromfunction(lambda i, j: np.where(i == j, 1.0, 0.05 + 0.01 * i * j), (m, m)).astype(np.float32)
    reg = RSMRegulariser(target, np.arange(m), "V1", 0.1, cost="l1")
    rows = torch.tensor([5, 1, 6])
    feats = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    # feature cosines: (0,1) 1/sqrt2, (0,2) 0, (1,2) 1/sqrt2
    # targets 0.05 + 0.01 i j: (5,1) 0.10, (5,6) 0.35, (1,6) 0.11
    expected = (abs(1 / math.sqrt(2) - 0.10) + abs(0 - 0.35) + abs(1 / math.sqrt(2) - 0.11)) / 3
    assert float(reg.loss({"V1": feats}, rows)) == pytest.approx(expected, rel=1e-5)
    g = torch.Generator().manual_seed(0)
    batch = reg.stimulus_batch(g)
    assert len(batch) == min(10, m) and len(set(batch.tolist())) == len(batch)
