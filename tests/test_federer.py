"""Federer et al. 2020: RSMs and teacher variants, the RSM regulariser, label corruption, the
learning-curve statistics, sweep expansion in the config, per-epoch test metrics in training,
and Fig. 6/7. Expected values are computed by hand (or by an independent code path), never
copied from a run."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats as sps

from neurobias.config import ConfigError, expand_sweeps, sweep_arm_name, validate_config
from neurobias.figures.federer import (
    STAR_GID,
    draw_accuracy_vs_label_noise,
    draw_accuracy_vs_r,
    draw_metric_over_epochs,
    draw_teacher_bars,
)
from neurobias.jobs import figure_federer, stats_learning_curves, tidy_arm
from neurobias.rule_params import federer_roles, learning_curve_arms
from neurobias.neural.rsm import feature_rsm, gaussian_responses, response_rsm, teacher_rsm
from neurobias.neural.similarity import off_diagonal
from neurobias.regularisers import RSMRegulariser, build_regulariser
from neurobias.regularisers.rsm import rsm_cost
from neurobias.robustness.label_noise import corrupt_labels
from statsmodels.stats.multitest import multipletests

from neurobias.stats import (
    GROUP_KEYS,
    LEARNING_CURVE_BETTER,
    compare_to_baseline,
    final_epoch_tests,
    learning_curve_records,
    significance_mark,
)

ROOT = Path(__file__).resolve().parents[1]
FED_TINY = ROOT / "tests" / "configs" / "federer_tiny.yaml"


# -- 1. RSMs against hand computations ------------------------------------------------------------

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


# -- 2. rsm_cost over the upper triangle ----------------------------------------------------------

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


# -- 3. ratio weighting, fixed weighting, schedule ------------------------------------------------

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


# -- 4. teacher variants --------------------------------------------------------------------------

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


# -- 5. label corruption --------------------------------------------------------------------------

N_LABELS, N_CLASSES = 1000, 10
LABELS = torch.as_tensor(np.random.default_rng(1).integers(0, N_CLASSES, N_LABELS), dtype=torch.int64)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_exactly_round_f_n_labels_change_to_another_class(fraction):
    before = LABELS.clone()
    y, mask = corrupt_labels(LABELS, fraction, N_CLASSES, seed=7)
    assert torch.equal(LABELS, before)  # input untouched
    assert y.dtype == LABELS.dtype and y.shape == LABELS.shape
    changed = y != LABELS
    assert int(changed.sum()) == round(fraction * N_LABELS)
    assert torch.equal(changed, mask)
    assert ((y >= 0) & (y < N_CLASSES)).all()
    assert torch.equal(y[~changed], LABELS[~changed])


def test_two_classes_corrupted_labels_flip():
    labels = torch.tensor([0, 1] * 10)
    y, mask = corrupt_labels(labels, 1.0, 2, seed=0)
    assert mask.all() and torch.equal(y, 1 - labels)
    y, mask = corrupt_labels(labels, 0.3, 2, seed=0)
    assert int(mask.sum()) == 6 and torch.equal(y[mask], 1 - labels[mask])


def test_corruption_seeded_and_nested():
    a, ma = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=7)
    b, mb = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=7)
    c, mc = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=8)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(ma, mc)
    _, m5 = corrupt_labels(LABELS, 0.5, N_CLASSES, seed=7)
    assert bool((ma & ~m5).sum() == 0)  # the 0.3 set is inside the 0.5 set
    assert int(m5.sum()) > int(ma.sum())
    # and the corrupted values agree where both corrupt
    y5, _ = corrupt_labels(LABELS, 0.5, N_CLASSES, seed=7)
    assert torch.equal(y5[ma], a[ma])


@pytest.mark.parametrize("fraction", [-0.1, 1.1])
def test_fraction_outside_unit_interval_raises(fraction):
    with pytest.raises(ValueError, match="fraction"):
        corrupt_labels(LABELS, fraction, N_CLASSES, seed=0)


# -- 6. learning-curve t-tests against scipy ------------------------------------------------------

SEEDS5 = (0, 1, 2, 3, 4)
JIT = (0.01, -0.02, 0.0, 0.015, -0.005)
EPOCHS = (1, 2, 3)


def history(base_acc: float, step: float, seed: int, gen_base: float = 0.2, scale: float = 1.0,
            extra=None) -> pd.DataFrame:
    """A hand-made history.csv: accuracy rising by ``step`` per epoch plus a per-seed jitter."""
    j = JIT[seed] * scale
    rows = []
    for e in EPOCHS:
        row = {"epoch": e, "train_loss": 1.0 / e, "test_accuracy": base_acc + step * (e - 1) + j,
               "generalisation_error": gen_base - 0.05 * e + JIT[(seed + e) % 5]}
        if extra:
            row.update(extra(e, seed))
        rows.append(row)
    return pd.DataFrame(rows)


# (arm, level) -> history parameters. At level 0.5, epoch 3, the teacher arm is far better (**);
# on clean labels the teacher equals the baseline (no mark).
HIST = {
    ("no_neural", 0.0): dict(base_acc=0.50, step=0.10),
    ("v1", 0.0): dict(base_acc=0.50, step=0.10),
    ("no_neural", 0.5): dict(base_acc=0.30, step=0.02),
    ("v1", 0.5): dict(base_acc=0.30, step=0.20),
}


def _tidy() -> pd.DataFrame:
    frames = []
    for (arm, level), kw in HIST.items():
        for seed in SEEDS5:
            # v1's jitter is rotated so the two arms are not identical on clean labels
            h = history(**kw, seed=(seed + (1 if arm == "v1" else 0)) % 5)
            frames.append(learning_curve_records(h, study="fed", arm=arm, seed=seed, label_noise=level,
                                                 r=0.1 if arm == "v1" else 0.0))
    return pd.concat(frames, ignore_index=True)


def test_learning_curve_records_rows():
    h = history(0.5, 0.1, 0)
    rec = learning_curve_records(h, study="fed", arm="v1", seed=2, label_noise=0.5, r=0.1)
    # within_superclass_error is not in the history: skipped; train_loss is not a curve metric
    assert sorted(rec["metric"].unique()) == ["generalisation_error", "test_accuracy"]
    assert len(rec) == 2 * len(EPOCHS)
    assert set(rec["level"]) == {0.5} and set(rec["r"]) == {0.1} and set(rec["seed"]) == {2}
    assert set(rec["condition"]) == {"label_noise"} and set(rec["evaluation"]) == {"learning_curves"}
    acc = rec[rec["metric"] == "test_accuracy"].sort_values("epoch")
    np.testing.assert_allclose(acc["value"], h["test_accuracy"])
    assert list(acc["epoch"]) == list(EPOCHS)


def test_learning_curve_tests_equal_scipy_welch():
    # compare_to_baseline still runs Welch per epoch when asked (the workflow tests the final epoch)
    tidy = _tidy()
    tests = compare_to_baseline(tidy, baseline="no_neural", by=(*GROUP_KEYS, "epoch"), test="welch")
    assert len(tests) == 2 * len(EPOCHS) * 2  # levels x epochs x metrics, one non-baseline arm
    assert set(tests["arm"]) == {"v1"}
    for _, row in tests.iterrows():
        cell = tidy[(tidy["level"] == row["level"]) & (tidy["epoch"] == row["epoch"])
                    & (tidy["metric"] == row["metric"])]
        a = cell[cell["arm"] == "v1"].sort_values("seed")["value"].to_numpy()
        b = cell[cell["arm"] == "no_neural"].sort_values("seed")["value"].to_numpy()
        assert len(a) == len(b) == 5
        ref = sps.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        assert row["p"] == pytest.approx(ref, rel=1e-10, abs=1e-300)
        assert row["significance"] == ("**" if ref < 0.001 else "*" if ref < 0.05 else "")
        assert row["difference"] == pytest.approx(a.mean() - b.mean())

    def cell(level, epoch, metric="test_accuracy"):
        return tests[(tests["level"] == level) & (tests["epoch"] == epoch) & (tests["metric"] == metric)].iloc[0]

    big = cell(0.5, 3)   # 0.30 + 0.40 vs 0.30 + 0.04, jitter ~0.01: p << 0.001
    assert big["p"] < 0.001 and big["significance"] == "**"
    none = cell(0.0, 3)  # same means, jitter only
    assert none["p"] > 0.05 and none["significance"] == ""
    assert cell(0.5, 1)["significance"] == ""  # identical design at epoch 1


def test_final_epoch_tests_are_paired_holm_adjusted_and_directed():
    tidy = _tidy().sample(frac=1.0, random_state=3)  # row order must not matter
    tests = final_epoch_tests(tidy, baseline="no_neural")
    last = max(EPOCHS)
    assert set(tests["epoch"]) == {last}  # no per-epoch p-values
    assert len(tests) == 2 * 2  # levels x metrics, one non-baseline arm
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    for _, row in tests.iterrows():
        cell = tidy[(tidy["level"] == row["level"]) & (tidy["epoch"] == last) & (tidy["metric"] == row["metric"])]
        a = cell[cell["arm"] == "v1"].sort_values("seed")["value"].to_numpy()
        b = cell[cell["arm"] == "no_neural"].sort_values("seed")["value"].to_numpy()
        assert row["better"] == "higher" and row["alternative"] == "greater"
        assert row["p"] == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10, abs=1e-300)
        assert row["n_pairs"] == 5
        assert row["difference"] == pytest.approx((a - b).mean())
    # one family: both levels and both metrics against the baseline
    np.testing.assert_allclose(tests["p_adjusted"], multipletests(tests["p"], method="holm")[1], rtol=1e-10)
    for _, row in tests.iterrows():
        assert row["significance"] == significance_mark(row["p_adjusted"])
    big = tests[(tests["level"] == 0.5) & (tests["metric"] == "test_accuracy")].iloc[0]
    assert big["p_adjusted"] < 0.001 and big["significance"] == "**"
    welch = final_epoch_tests(tidy, baseline="no_neural", test="welch", correction="bh")
    assert set(welch["test"]) == {"welch"} and set(welch["correction"]) == {"bh"}
    np.testing.assert_allclose(welch["p_adjusted"], multipletests(welch["p"], method="fdr_bh")[1], rtol=1e-10)


def test_generalisation_error_higher_is_better():
    """train - test loss: memorising drives it down, so a higher value is the better network."""
    assert LEARNING_CURVE_BETTER == {"test_accuracy": "higher", "generalisation_error": "higher",
                                     "within_superclass_error": "higher"}
    frames = []
    for arm, gap in (("no_neural", -0.5), ("v1", -0.1), ("overfits", -0.9)):  # v1 overfits least
        for seed in SEEDS5:
            h = pd.DataFrame({"epoch": [1, 2], "test_accuracy": [0.5, 0.5 + 0.01 * seed],
                              "generalisation_error": [0.0, gap + JIT[seed] + 0.01 * (arm == "v1") * seed]})
            frames.append(learning_curve_records(h, study="fed", arm=arm, seed=seed))
    tests = final_epoch_tests(pd.concat(frames), baseline="no_neural").set_index(["arm", "metric"])
    assert tests.loc[("v1", "generalisation_error"), "alternative"] == "greater"
    assert tests.loc[("v1", "generalisation_error"), "significance"] == "**"
    assert tests.loc[("overfits", "generalisation_error"), "p"] > 0.99
    assert tests.loc[("overfits", "generalisation_error"), "significance"] == ""


def test_significance_marks_thresholds():
    assert [significance_mark(p) for p in (0.0005, 0.001, 0.01, 0.049, 0.05, 0.5, float("nan"))] == \
        ["**", "*", "*", "*", "", "", ""]


# -- 7. config: sweeps, errors ----------------------------------------------------------------------

@pytest.fixture
def fed_cfg():
    return yaml.safe_load(FED_TINY.read_text())


def error_of(cfg):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    return str(e.value)


def test_sweeps_expand_into_named_arms(fed_cfg):
    arms = validate_config(copy.deepcopy(fed_cfg))["studies"]["fed"]["arms"]
    hand = fed_cfg["studies"]["fed"]["arms"]
    assert set(arms) == set(hand) | {"v1_labelnoise0.5", "no_neural_labelnoise0.5", "v1_r1"}
    assert arms["v1_labelnoise0.5"] == {**arms["v1"], "label_noise": 0.5, "sweep_of": "v1"}
    assert arms["no_neural_labelnoise0.5"] == {"regulariser": "none", "label_noise": 0.5, "sweep_of": "no_neural"}
    assert arms["v1_r1"] == {**arms["v1"], "r": 1.0, "sweep_of": "v1"}
    assert "label_noise" not in arms["v1_r1"]
    assert arms["v1"] == {**hand["v1"], "cost": "l1", "weighting": "ratio", "alternate": True,
                          "neural_batchnorm": "update"}  # base arm untouched
    assert sweep_arm_name("v1", "label_noise", 0.25) == "v1_labelnoise0.25"
    assert sweep_arm_name("v1", "r", 0.1) == "v1_r0.1"


def test_validation_is_idempotent(fed_cfg):
    once = validate_config(copy.deepcopy(fed_cfg))
    twice = validate_config(copy.deepcopy(once))
    assert twice["studies"]["fed"]["arms"] == once["studies"]["fed"]["arms"]
    study = copy.deepcopy(once["studies"]["fed"])
    expand_sweeps(study, "studies.fed")
    assert study["arms"] == once["studies"]["fed"]["arms"]


def test_shipped_federer_demo_is_valid():
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    arms = cfg["studies"]["federer_demo"]["arms"]
    assert arms["v1_labelnoise0.5"]["label_noise"] == 0.5 and arms["v1_r1"]["r"] == 1.0


@pytest.mark.parametrize("mutate, field, also", [
    (lambda s: s["arms"]["v1"].pop("layer"), "studies.fed.arms.v1.layer", "rsm"),
    (lambda s: s["arms"]["v1"].update(layer="layer1"), "studies.fed.arms.v1.layer", "layer1"),
    (lambda s: s["arms"]["v1"].update(target="model"), "studies.fed.arms.v1.target", "model"),
    (lambda s: s["sweeps"]["label_noise"].update(arms=["no_neural", "nope"]),
     "studies.fed.sweeps.label_noise.arms", "nope"),
    (lambda s: s["sweeps"]["r"].update(arms=["no_neural"]), "studies.fed.sweeps.r.arms", "no_neural"),
    (lambda s: s["training"].update(track_test=False), "studies.fed.training.track_test", "learning_curves"),
    (lambda s: s["training"].pop("track_test"), "studies.fed.training.track_test", "learning_curves"),
    (lambda s: s["model"].update(batch_norm=True), "studies.fed.model.batch_norm", "cornet_z"),
])
def test_config_errors_name_the_field(fed_cfg, mutate, field, also):
    mutate(fed_cfg["studies"]["fed"])
    msg = error_of(fed_cfg)
    assert field in msg and also in msg


def test_tidy_arm_and_roles(fed_cfg):
    study = validate_config(fed_cfg)["studies"]["fed"]
    arms = study["arms"]
    assert tidy_arm("v1_labelnoise0.5", arms["v1_labelnoise0.5"]) == "v1"
    assert tidy_arm("no_neural_labelnoise0.5", arms["no_neural_labelnoise0.5"]) == "no_neural"
    assert tidy_arm("v1_r1", arms["v1_r1"]) == "v1_r1"
    assert tidy_arm("v1", arms["v1"]) == "v1"
    roles = federer_roles(study)
    assert roles == {"baseline": "no_neural", "teacher": "v1", "max_level": 0.5,
                     "teachers": ["no_neural", "v1", "v1_shuffled", "gaussian_v1_stats", "gaussian_other_stats"],
                     "r_arms": ["v1", "v1_r1"]}


# -- 8. training with per-epoch test metrics and corrupted labels ---------------------------------

SUPERCLASS = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.fixture(scope="module")
def small_task():
    from neurobias.data import CLASS_NAMES, make_synthetic_task
    from neurobias.data.synthetic import make_stimulus_images
    from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
    s = make_synthetic_task(5, n_train=128, n_val=32, n_test=60)
    split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 40)
    target = response_rsm(SimulatedV1(V1PopulationParams(n_neurons=20), 1).mean_rates(stim))
    tiers = np.array(["train"] * 30 + ["test"] * 10)
    return split("train"), split("val"), split("test"), stim, tiers, target


RSM_ARM = {"regulariser": "rsm", "target": "rsm_v1", "r": 0.5, "layer": "V1", "stimulus_batch_size": 8}
TRACK = dict(epochs=1, batch_size=32, lr=0.05, track_test=True, precision="fp32")


def run_small(task, out, arm, superclass=None, seed=0):
    from neurobias.train import TrainingConfig, train_arm
    train, val, test, stim, tiers, target = task
    return train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers,
                     target=target if arm["regulariser"] != "none" else None, diagnostic_target=target,
                     arm=arm, model_cfg={"architecture": "cornet_z", "width": 4},
                     training=TrainingConfig(**TRACK), seed=seed, device="cpu", out_dir=out, progress=False,
                     test=test, superclass_of_class=superclass, context={"rsm_metric": "cosine"})


@pytest.fixture(scope="module")
def rsm_run(small_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("rsm_run")
    return run_small(small_task, out, RSM_ARM, superclass=SUPERCLASS), out


def test_rsm_arm_history_has_test_metrics(rsm_run, small_task):
    from neurobias.models.io import load_classifier
    h, out = rsm_run
    assert list(h["epoch"]) == [1]
    for col in ("test_accuracy", "test_loss", "train_eval_loss", "generalisation_error", "within_superclass_error"):
        assert col in h, col
    row = h.iloc[0]
    assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["within_superclass_error"] <= 1
    assert row["generalisation_error"] == pytest.approx(row["train_eval_loss"] - row["test_loss"], abs=1e-9)
    assert row["train_similarity_loss"] > 0  # the neural term was added on the odd steps
    # recompute from the saved model and the original test labels
    model = load_classifier(out / "model.pt")
    test_x, test_y, _ = small_task[2]
    with torch.no_grad():
        logits = model(test_x.float() / 255.0)
    pred = logits.argmax(1).tolist()
    truth = test_y.tolist()
    wrong = [(p, t) for p, t in zip(pred, truth) if p != t]
    within = sum(1 for p, t in wrong if SUPERCLASS[p] == SUPERCLASS[t])
    share = within / max(len(wrong), 1)
    assert row["within_superclass_error"] == pytest.approx(share, abs=1e-6)
    assert row["test_accuracy"] == pytest.approx(sum(p == t for p, t in zip(pred, truth)) / len(truth), abs=1e-6)
    assert row["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, test_y)), rel=1e-4)
    saved = pd.read_csv(out / "history.csv")
    assert saved["generalisation_error"].iloc[0] == pytest.approx(row["generalisation_error"])


def test_within_superclass_share_by_hand_with_a_stub_model():
    """epoch_test_metrics on fixed predictions: 6 test images, 4 errors, 3 of them within the
    true class's superclass (SUPERCLASS pairs classes 2k and 2k+1)."""
    from neurobias.train import epoch_test_metrics
    truth = [0, 2, 4, 6, 8, 1]
    pred = [1, 3, 4, 0, 9, 1]   # errors: 0->1 (same), 2->3 (same), 6->0 (other), 8->9 (same)

    class Stub(torch.nn.Module):
        def forward(self, x):  # image i carries the value i; its logits favour pred[i]
            idx = (x[:, 0, 0, 0] * 255).round().long()
            return torch.nn.functional.one_hot(torch.tensor(pred)[idx], 10).float() * 5

    images = torch.arange(6, dtype=torch.uint8).reshape(6, 1, 1, 1)
    out = epoch_test_metrics(Stub(), (images, torch.tensor(truth)), images, torch.tensor(truth),
                             SUPERCLASS, batch_size=4, device="cpu")
    assert out["test_accuracy"] == pytest.approx(2 / 6)
    assert out["within_superclass_error"] == pytest.approx(3 / 4)
    assert out["test_superclass_accuracy"] == pytest.approx(5 / 6)
    assert out["generalisation_error"] == pytest.approx(out["train_eval_loss"] - out["test_loss"])
    no_super = epoch_test_metrics(Stub(), (images, torch.tensor(truth)), images, torch.tensor(truth),
                                  None, batch_size=4, device="cpu")
    assert "within_superclass_error" not in no_super


def test_label_noise_corrupts_training_labels_only(small_task, tmp_path):
    from neurobias.models.io import load_classifier
    clean = run_small(small_task, tmp_path / "clean", {"regulariser": "none"})
    noisy = run_small(small_task, tmp_path / "noisy", {"regulariser": "none", "label_noise": 1.0})
    assert not np.isclose(clean["train_loss"].iloc[0], noisy["train_loss"].iloc[0])
    assert not clean.equals(noisy)
    train_x, train_y, _ = small_task[0]
    test_x, test_y, _ = small_task[2]
    corrupted, mask = corrupt_labels(train_y, 1.0, 10, seed=0)
    assert mask.all()
    model = load_classifier(tmp_path / "noisy" / "model.pt")
    with torch.no_grad():
        test_logits = model(test_x.float() / 255.0)
        train_logits = model(train_x.float() / 255.0)
    row = noisy.iloc[0]
    # test metrics use the original test labels
    assert row["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(test_logits, test_y)), rel=1e-4)
    assert row["test_accuracy"] == pytest.approx(float((test_logits.argmax(1) == test_y).float().mean()), abs=1e-6)
    # the training loss of the generalisation error uses the labels the network was trained on
    ce_corrupted = float(torch.nn.functional.cross_entropy(train_logits, corrupted))
    ce_original = float(torch.nn.functional.cross_entropy(train_logits, train_y))
    assert row["train_eval_loss"] == pytest.approx(ce_corrupted, rel=1e-4)
    assert not np.isclose(ce_corrupted, ce_original, rtol=1e-3)
    assert row["train_eval_accuracy"] == pytest.approx(float((train_logits.argmax(1) == corrupted).float().mean()),
                                                       abs=1e-6)


def test_track_test_needs_the_test_split(small_task, tmp_path):
    from neurobias.train import TrainingConfig, train_arm
    train, val, _, stim, tiers, target = small_task
    with pytest.raises(ValueError, match="track_test"):
        train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers, target=None, diagnostic_target=target,
                  arm={"regulariser": "none"}, model_cfg={"architecture": "cornet_z", "width": 4},
                  training=TrainingConfig(**TRACK), seed=0, device="cpu", out_dir=tmp_path, progress=False)


# -- 9. Fig. 6 and Fig. 7 -------------------------------------------------------------------------

# Final-epoch clean-label accuracy per arm (v1 clearly better than the baseline, the others not);
# at 0.5 corrupted labels the teacher arm is better.
FIG_HIST = {
    "no_neural": dict(base_acc=0.40, step=0.10),
    "v1": dict(base_acc=0.50, step=0.15),
    "v1_shuffled": dict(base_acc=0.40, step=0.10),
    "gaussian_v1_stats": dict(base_acc=0.39, step=0.10),
    "gaussian_other_stats": dict(base_acc=0.38, step=0.10),
    "no_neural_labelnoise0.5": dict(base_acc=0.20, step=0.02),
    "v1_labelnoise0.5": dict(base_acc=0.22, step=0.10),
    "v1_r1": dict(base_acc=0.41, step=0.10),
}


@pytest.fixture(scope="module")
def fig_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("federer_stats")
    study = validate_config(yaml.safe_load(FED_TINY.read_text()))["studies"]["fed"]
    study["seeds"] = list(SEEDS5)
    paths = {}
    for k, (arm, kw) in enumerate(FIG_HIST.items()):
        for seed in SEEDS5:
            p = d / f"{arm}_{seed}.csv"
            # each arm's jitter rotated: seeds are paired across arms but not identical
            history(**kw, seed=(seed + k) % len(SEEDS5)).to_csv(p, index=False)
            paths[(arm, seed)] = p
    out = d / "stats"
    runs = list(paths)
    stats_learning_curves(histories=[paths[r] for r in runs], tidy=out / "tidy.csv", summary=out / "summary.csv",
                          tests=out / "tests.csv", study="fed", runs=runs, arms_cfg=learning_curve_arms(study),
                          baseline=study["baseline_arm"], metrics=study["evaluations"]["learning_curves"].get("metrics"),
                          statistics=study["statistics"])
    return study, out / "summary.csv", out / "tests.csv"


def _ax():
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _final_mean(summary, arm, level=0.0, metric="test_accuracy"):
    last = summary["epoch"].max()
    f = summary[(summary["arm"] == arm) & np.isclose(summary["level"], level) & (summary["epoch"] == last)
                & (summary["metric"] == metric)]
    assert len(f) == 1, (arm, level)
    return float(f["mean"].iloc[0])


def test_learning_curve_statistics_tables(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    # the label-noise copies are shown as their base arm at level 0.5; the r copy keeps its name
    assert set(summary["arm"]) == {"no_neural", "v1", "v1_shuffled", "gaussian_v1_stats", "gaussian_other_stats",
                                   "v1_r1"}
    assert set(summary.loc[summary["arm"] == "v1", "level"]) == {0.0, 0.5}
    assert set(summary.loc[summary["arm"] == "v1_shuffled", "level"]) == {0.0}
    r_of = summary.groupby("arm")["r"].first()
    assert r_of["no_neural"] == 0.0 and r_of["v1"] == 0.1 and r_of["v1_r1"] == 1.0
    # hand mean of v1 at 0.5, last epoch: 0.22 + 2 * 0.10 + mean(JIT) = 0.42
    assert _final_mean(summary, "v1", 0.5) == pytest.approx(0.22 + 0.2 + np.mean(JIT))
    # every test is against no_neural at the same level, at the final epoch only, as the config says
    assert set(tests["baseline"]) == {"no_neural"}
    assert set(tests.loc[tests["level"] == 0.5, "arm"]) == {"v1"}
    assert set(tests["epoch"]) == {max(EPOCHS)} and set(summary["epoch"]) == set(EPOCHS)
    assert study["statistics"] == {"test": "paired", "correction": "holm"}
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    assert {"p", "p_adjusted", "better", "alternative", "n_pairs", "r"} <= set(tests.columns)
    np.testing.assert_allclose(tests["p_adjusted"], multipletests(tests["p"], method="holm")[1], rtol=1e-10)
    assert len(tests) == (len(FIG_HIST) - 3 + 1) * 2  # clean: 5 arms, 0.5: v1; two metrics


def test_federer_figures_render(fig_inputs, tmp_path):
    study, summary_path, tests_path = fig_inputs
    for fig in ("federer_fig6", "federer_fig7"):
        pdf, png = tmp_path / f"{fig}.pdf", tmp_path / f"{fig}.png"
        figure_federer(summary=summary_path, tests=tests_path, pdf=pdf, png=png, figure=fig, study="fed",
                       roles=federer_roles(study), architecture=study["model"]["architecture"],
                       n_seeds=len(study["seeds"]), note=study["figure_note"])
        assert pdf.read_bytes()[:4] == b"%PDF"
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[1] > img.shape[0] > 200 and float(np.std(img)) > 0
    assert (tmp_path / "provenance_federer_fig7.json").exists()


def test_teacher_bars_heights_and_marks(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    teachers = federer_roles(study)["teachers"]
    ax = draw_teacher_bars(_ax(), summary, tests, metric="test_accuracy", arms=teachers)
    bars = {p.get_gid()[len("arm:"):]: p for p in ax.patches if (p.get_gid() or "").startswith("arm:")}
    assert list(bars) == teachers
    for i, arm in enumerate(teachers):
        assert bars[arm].get_height() == pytest.approx(_final_mean(summary, arm))
        assert bars[arm].get_x() + bars[arm].get_width() / 2 == pytest.approx(i)
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    last = summary["epoch"].max()
    sig = tests[(tests["level"] == 0.0) & (tests["epoch"] == last) & (tests["metric"] == "test_accuracy")
                & (tests["p"] < 0.05)]
    assert set(sig["arm"]) == {"v1"}  # 0.80 vs 0.60 on clean labels; the others are not better
    assert len(stars) == 1
    assert stars[0].get_text() in ("*", "**")
    assert stars[0].xy[0] == pytest.approx(teachers.index("v1"))
    assert stars[0].xy[1] >= bars["v1"].get_height()


def test_curve_marks_only_at_the_final_epoch(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_metric_over_epochs(_ax(), summary, tests, metric="test_accuracy", arms=("no_neural", "v1"),
                                 levels=[0.0, 0.5])
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    assert stars and {t.xy[0] for t in stars} == {max(EPOCHS)}
    final = tests[(tests["arm"] == "v1") & (tests["metric"] == "test_accuracy")]
    assert sorted(t.get_text() for t in stars) == sorted(m for m in final["significance"].fillna("") if m)


def test_federer_caption_says_which_test(fig_inputs, tmp_path, monkeypatch):
    import neurobias.figures as figures
    study, summary_path, tests_path = fig_inputs
    seen = {}
    monkeypatch.setitem(figures.FIGURES, "federer_fig6", lambda summary, tests, **kw: seen.update(kw))
    figure_federer(summary=summary_path, tests=tests_path, pdf=tmp_path / "f.pdf", png=tmp_path / "f.png",
                   figure="federer_fig6", study="fed", roles=federer_roles(study), architecture="cornet_z",
                   n_seeds=5, note="")
    note = seen["note"]
    assert "one-tailed paired t-test over seeds vs r = 0 on the same labels" in note
    assert "Holm-adjusted within the 12 comparisons" in note
    assert "higher generalisation_error" in note and "final epoch" in note
    assert "Welch" not in note


def test_panel_c_without_superclasses(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_teacher_bars(_ax(), summary, tests, metric="within_superclass_error",
                           arms=federer_roles(study)["teachers"])
    assert any("no superclasses" in t.get_text() for t in ax.texts)
    assert not [p for p in ax.patches if (p.get_gid() or "").startswith("arm:")]


def test_accuracy_vs_label_noise_lines(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_accuracy_vs_label_noise(_ax(), summary, tests, baseline="no_neural", teacher="v1")
    # errorbar gives its caps the same gid; the data line is the one drawn with a line style
    lines = {l.get_gid()[len("arm:"):]: l for l in ax.get_lines()
             if (l.get_gid() or "").startswith("arm:") and l.get_linestyle() not in ("None", "none", "")}
    assert set(lines) == {"no_neural", "v1"}
    for arm, line in lines.items():
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.0, 0.5])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float),
                                   [_final_mean(summary, arm, 0.0), _final_mean(summary, arm, 0.5)])
    # hand values at the last epoch: no_neural 0.40 + 0.20 and 0.20 + 0.04, plus mean(JIT)
    np.testing.assert_allclose(np.asarray(lines["no_neural"].get_ydata(), float), np.array([0.60, 0.24]) + np.mean(JIT))


def test_metric_over_epochs_and_r_panel(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_metric_over_epochs(_ax(), summary, tests, metric="test_accuracy", arms=("no_neural", "v1"), levels=[0.5])
    lines = {l.get_gid(): l for l in ax.get_lines() if (l.get_gid() or "").startswith("arm:")}
    assert set(lines) == {"arm:no_neural:0.5", "arm:v1:0.5"}
    np.testing.assert_allclose(np.asarray(lines["arm:v1:0.5"].get_xdata(), float), EPOCHS)
    np.testing.assert_allclose(np.asarray(lines["arm:v1:0.5"].get_ydata(), float),
                               [0.22 + 0.1 * k + np.mean(JIT) for k in range(3)])
    ax = draw_accuracy_vs_r(_ax(), summary, tests, baseline="no_neural", arms=["v1", "v1_r1"])
    line, = [l for l in ax.get_lines()
             if l.get_gid() == "arm:r_sweep" and l.get_linestyle() not in ("None", "none", "")]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.1, 1.0])
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float),
                               [_final_mean(summary, "v1"), _final_mean(summary, "v1_r1")])


def test_a_never_recorded_neuron_is_left_out_of_the_rsm():
    r = np.random.default_rng(0).random((6, 4))
    with_gap = r.copy()
    with_gap[:, 2] = np.nan
    assert np.allclose(response_rsm(with_gap), response_rsm(np.delete(r, 2, axis=1)))


# -- checks added after review: inputs the schema allows that would fail inside a job ------------
def _fed_config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "federer_tiny.yaml").read_text())


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["studies"]["fed"]["sweeps"]["label_noise"].update(arms=["v1"]), "sweeps.label_noise.arms"),
    (lambda c: c["studies"]["fed"]["evaluations"]["learning_curves"].update(metrics=["within_superclass_error"]),
     "learning_curves.metrics"),
    (lambda c: c["studies"]["fed"]["model"].update(architecture="vgg16", input_size=16), "model"),
    (lambda c: c["studies"]["fed"]["arms"]["no_neural"].update(model={"vone": {"simple_channels": 0, "complex_channels": 0}}),
     "arms.no_neural.model.vone"),
])
def test_configs_that_would_fail_inside_a_job_are_refused_up_front(edit, field):
    from neurobias.config import ConfigError, validate_config
    cfg = _fed_config()
    edit(cfg)
    if cfg["studies"]["fed"]["model"]["architecture"] == "vgg16":
        for arm in cfg["studies"]["fed"]["arms"].values():
            if arm.get("layer"):
                arm["layer"] = "conv2_1"
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(cfg)


def test_unknown_manipulation_is_refused_by_the_schema():
    from neurobias.config import ConfigError, validate_config
    cfg = _fed_config()
    cfg["brain_likeness"] = {"manipulations": {"levels": {"blur": [1]}}}
    with pytest.raises(ConfigError, match="brain_likeness.manipulations.levels"):
        validate_config(cfg)


def test_a_stochastic_vone_arm_resumes_to_the_same_history(tmp_path):
    from neurobias.data.synthetic import make_synthetic_task
    from neurobias.train import TrainingConfig, train_arm
    splits = make_synthetic_task(seed=1, n_train=64, n_val=16, n_test=16, image_size=32)
    train, val = [(torch.as_tensor(x), torch.as_tensor(y), [str(i) for i in range(10)])
                  for x, y in (splits["train"], splits["val"])]
    stim = np.random.default_rng(0).integers(0, 256, (12, 32, 32)).astype(np.uint8)
    tiers = np.array(["train"] * 8 + ["test"] * 4)
    kw = dict(train=train, val=val, stimuli=stim, stimulus_tiers=tiers, target=None,
              diagnostic_target=np.eye(12, dtype=np.float32), arm={"regulariser": "none"},
              model_cfg={"architecture": "resnet18", "width": 4,
                         "vone": {"simple_channels": 4, "complex_channels": 4, "bottleneck": 4}},
              training=TrainingConfig(epochs=2, batch_size=16, precision="fp32"), seed=0, device="cpu",
              progress=False)
    full = train_arm(out_dir=tmp_path / "full", **kw)
    train_arm(out_dir=tmp_path / "killed", stop_after_epoch=1, **kw)
    resumed = train_arm(out_dir=tmp_path / "killed", **kw)
    pd.testing.assert_frame_equal(full, resumed)
