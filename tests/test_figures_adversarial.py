"""Tests for neurobias.figures.adversarial: the points equal the inputs, stars mark the winner, files
are written."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurobias.figures.adversarial import METRICS, draw_adversarial, plot_adversarial
from neurobias.figures.noise_robustness import STAR_GID, order_arms
from neurobias.stats import compare_to_baseline


# neural_model clearly above the baseline (Li et al.'s numbers); the other arms are not
ARMS = {"none": (0.09, 0.0025), "neural_model": (0.13, 0.0034), "shuffle": (0.091, 0.00252),
        "my_new_arm": (0.089, 0.0025)}
JITTER = (-0.04, 0.0, 0.03, -0.01, 0.02)


def figure_tidy() -> pd.DataFrame:
    rows = []
    for arm, (l2, linf) in ARMS.items():
        for seed, j in enumerate(JITTER):
            for metric, v in (("median_l2", l2), ("median_linf", linf)):
                rows.append(dict(study="demo", arm=arm, seed=seed, evaluation="adversarial",
                                 condition="fmn", level=0.0, metric=metric, value=v * (1 + j)))
    return pd.DataFrame(rows)


def test_figure_points_equal_the_inputs_and_stars_mark_the_winner():
    tidy = figure_tidy()
    tests = compare_to_baseline(tidy)
    fig = Figure()
    FigureCanvasAgg(fig)
    axes = draw_adversarial(fig.subplots(1, 2), tidy, tests)
    for ax, metric in zip(axes, METRICS):
        points = {c.get_gid()[len("seeds:"):]: c for c in ax.collections
                  if (c.get_gid() or "").startswith("seeds:")}
        assert list(points) == order_arms(ARMS)
        for arm, coll in points.items():
            expected = tidy[(tidy.arm == arm) & (tidy.metric == metric)].sort_values("seed")["value"]
            np.testing.assert_allclose(coll.get_offsets()[:, 1], expected.to_numpy())
            bars = [p for p in ax.patches if p.get_gid() == f"mean:{arm}"]
            assert len(bars) == 1 and bars[0].get_height() == pytest.approx(expected.mean())
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks[0] == "Baseline (None)" and ticks[-1] == "my_new_arm"
        stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
        assert len(stars) == 1
        assert all(abs(s.get_position()[0] - 1.0) < 1e-9 for s in stars)   # neural_model only


def test_plot_writes_png_and_pdf(tmp_path):
    tidy = figure_tidy()
    out_pdf, out_png = tmp_path / "f" / "adversarial.pdf", tmp_path / "f" / "adversarial.png"
    plot_adversarial(tidy, compare_to_baseline(tidy), title="Adversarial robustness",
                     note="FMN, 1000 images, n=5 seeds, mean ± SEM", out_pdf=out_pdf, out_png=out_png)
    assert out_pdf.read_bytes()[:4] == b"%PDF"
    img = mpimg.imread(out_png)
    assert img.ndim == 3 and img[..., :3].std() > 0.01          # not blank
    assert sorted(p.name for p in out_pdf.parent.iterdir()) == ["adversarial.pdf", "adversarial.png"]
    first = out_pdf.read_bytes()
    plot_adversarial(tidy, None, title="Adversarial robustness", note="", out_pdf=out_pdf, out_png=out_png)
    assert out_pdf.read_bytes() != first                        # re-rendered (no stars now)
    with pytest.raises(ValueError, match="one 'median_l2' row per"):
        plot_adversarial(pd.concat([tidy, tidy]), None, title="t", note="", out_pdf=out_pdf, out_png=out_png)
