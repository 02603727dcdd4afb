"""Minimal adversarial perturbations (neurobias.robustness.adversarial, Foolbox FMN) against analytic
answers (their figure: tests/test_figures_adversarial.py).

The model is a linear two-class classifier f(x) = w . (x - 0.5) on constant images, whose
minimal distances to the decision boundary are known in closed form (when the [0, 1] box does
not bind, which the chosen levels and weights guarantee):

    L2:   |f(x)| / ||w||_2        Linf: |f(x)| / ||w||_1
"""

from __future__ import annotations

import math

import eagerpy as ep
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neurobias.robustness.adversarial import (
    PERTURBATION_COLUMNS,
    L2FMNAttackFixed,
    minimal_perturbations,
    perturbation_records,
    select_images,
    summarise_perturbations,
)
from neurobias.stats import TIDY_COLUMNS

LEVELS = (0.3, 0.4, 0.45, 0.47, 0.53, 0.55, 0.6, 0.7)
TOL = 0.10        # attack may overshoot the true minimum by at most 10 %
SLACK = 1e-5      # ... and undershoot it only by float32 rounding


class Linear(nn.Module):
    """Two logits (-f/2, f/2) with f(x) = w . (x - 0.5): class 1 iff f > 0."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        f = ((x - 0.5).flatten(1) * self.w.flatten()).sum(1)
        return torch.stack([-f / 2, f / 2], dim=1)


def problem(flip=()):
    g = torch.Generator().manual_seed(0)
    w = 1 + 0.8 * torch.randn(3, 8, 8, generator=g)       # non-uniform, sum(w) > 0
    levels = torch.tensor(LEVELS).repeat(3)
    x = (levels[:, None, None, None].expand(-1, 3, 8, 8) * 255).round().to(torch.uint8)
    y = (levels > 0.5).long()
    for i in flip:
        y[i] = 1 - y[i]
    f = ((x.double() / 255 - 0.5).flatten(1) * w.double().flatten()).sum(1)
    analytic = {"l2": (f.abs() / w.double().norm()).numpy(),
                "linf": (f.abs() / w.double().abs().sum()).numpy()}
    return Linear(w).eval(), x, y, analytic


def sizes(df, norm):
    d = df[df["norm"] == norm].sort_values("image")
    return d["image"].to_numpy(), d["size"].to_numpy()


def test_sizes_match_the_analytic_minimum_and_never_undercut_it():
    model, x, y, analytic = problem()
    df = minimal_perturbations(model, x, y, n_images=None, seed=0, steps=100, progress=False)
    assert list(df.columns) == list(PERTURBATION_COLUMNS)
    assert len(df) == 2 * len(x) and df["success"].all() and df["clean_correct"].all()
    for norm in ("l2", "linf"):
        idx, s = sizes(df, norm)
        ratio = s / analytic[norm][idx]
        assert ratio.min() >= 1 - SLACK, (norm, ratio.min())   # smaller would be a bug
        assert ratio.max() <= 1 + TOL, (norm, ratio.max())


def test_fixed_l2_projection_shrinks_onto_the_ball():
    # Foolbox 3.3.4's L2FMNAttack.project is a no-op (norms / norms); ours must project.
    x0 = ep.astensor(torch.zeros(2, 1, 2, 2))
    x = ep.astensor(torch.full((2, 1, 2, 2), 1.0))                # ||x - x0||_2 = 2
    eps = ep.astensor(torch.tensor([1.0, math.inf]))
    out = L2FMNAttackFixed().project(x, x0, eps).raw
    assert torch.allclose(out[0].flatten().norm(), torch.tensor(1.0))
    assert torch.equal(out[1], x.raw[1])


def test_misclassified_images_get_zero_and_count_in_the_median():
    flip = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)             # 13 of 24 images wrong
    model, x, y, _ = problem(flip)
    df = minimal_perturbations(model, x, y, n_images=None, seed=0, steps=50, progress=False)
    wrong = df[df["image"].isin(flip)]
    assert (~wrong["clean_correct"]).all() and (wrong["size"] == 0).all() and wrong["success"].all()
    assert (df[~df["image"].isin(flip)]["size"] > 0).all()
    summary = summarise_perturbations(df)
    assert summary["median_l2"] == 0 and summary["median_linf"] == 0   # majority is zero
    assert summary["clean_accuracy"] == pytest.approx(11 / 24) and summary["n_images"] == 24
    assert summary["success_rate_l2"] == 1.0


class Constant(nn.Module):
    """Ignores its input: no perturbation can change its decision."""

    def forward(self, x):
        return torch.tensor([1.0, 0.0]) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_failed_attacks_are_infinite_and_unsuccessful():
    _, x, _, _ = problem()
    y = torch.zeros(len(x), dtype=torch.long)
    df = minimal_perturbations(Constant(), x[:4], y[:4], norms=("linf",), n_images=None, seed=0,
                               steps=5, progress=False)
    assert np.isinf(df["size"]).all() and not df["success"].any()
    assert summarise_perturbations(df)["success_rate_linf"] == 0.0


def test_same_seed_same_result_and_subset_is_seeded():
    model, x, y, _ = problem()
    a = minimal_perturbations(model, x, y, n_images=10, seed=3, steps=30, batch_size=4, progress=False)
    b = minimal_perturbations(model, x, y, n_images=10, seed=3, steps=30, batch_size=4, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert sorted(set(a["image"])) == select_images(len(x), 10, 3).tolist()
    assert not np.array_equal(select_images(1000, 10, 3), select_images(1000, 10, 4))
    assert np.array_equal(select_images(24, None, 0), np.arange(24))
    assert np.array_equal(select_images(24, 100, 0), np.arange(24))
    # each image's answer does not depend on how the images were batched
    c = minimal_perturbations(model, x, y, n_images=10, seed=3, steps=30, batch_size=10, progress=False)
    np.testing.assert_allclose(a["size"], c["size"], rtol=1e-5)


def test_tidy_records_have_the_documented_columns():
    model, x, y, _ = problem(flip=(0,))
    df = minimal_perturbations(model, x, y, n_images=8, seed=0, steps=20, progress=False)
    tidy = perturbation_records(df, study="demo", arm="none", seed=2)
    assert tuple(tidy.columns) == TIDY_COLUMNS
    assert set(tidy["metric"]) == {"median_l2", "median_linf", "success_rate_l2",
                                   "success_rate_linf", "clean_accuracy", "n_images"}
    assert (tidy["evaluation"] == "adversarial").all() and (tidy["condition"] == "fmn").all()
    assert (tidy["level"] == 0).all() and (tidy["seed"] == 2).all()
    summary = summarise_perturbations(df)
    assert dict(zip(tidy["metric"], tidy["value"])) == pytest.approx(summary)
