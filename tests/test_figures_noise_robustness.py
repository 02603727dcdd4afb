"""Tests for neurobias.figures.noise_robustness (the noise-robustness figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import matplotlib.image as mpimg

from neurobias.figures import FIGURES, ARM_STYLE, order_arms
from neurobias.figures.noise_robustness import (
    STAR_GID,
    draw_noise_robustness,
    plot_noise_robustness,
)
from neurobias.stats import compare_to_baseline, summarise


LEVELS = (0.0, 0.05, 0.1, 0.2)
# mean accuracy per arm and level; neural_model is much better at 0.1 and 0.2
MEANS = {
    "none": (0.90, 0.80, 0.55, 0.25),
    "neural_model": (0.90, 0.81, 0.70, 0.45),
    "shuffle": (0.89, 0.79, 0.54, 0.26),
    "my_new_arm": (0.88, 0.78, 0.56, 0.24),
}
JITTER = (-0.02, 0.01, 0.0, 0.015, -0.005)  # sd ~0.014: 0.01 differences are not significant


def tidy() -> pd.DataFrame:
    rows = []
    for arm, means in MEANS.items():
        for level, m in zip(LEVELS, means):
            for seed, j in enumerate(JITTER):
                # rotate jitter per arm so arms are not perfectly correlated
                jj = JITTER[(seed + len(arm)) % len(JITTER)]
                rows.append(
                    dict(study="demo", arm=arm, seed=seed, evaluation="gaussian_noise",
                         condition="gaussian_noise", level=level, metric="accuracy",
                         value=m + jj)
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frames():
    df = tidy()
    return summarise(df), compare_to_baseline(df)


def _arm_lines(ax):
    return {
        line.get_gid()[len("arm:"):]: line
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith("arm:")
    }


def test_draw_lines_equal_summary_means(frames):
    summary, comparisons = frames
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    out = draw_noise_robustness(ax, summary, comparisons, chance=0.1)
    assert out is ax
    lines = _arm_lines(ax)
    assert set(lines) == set(MEANS)
    for arm, line in lines.items():
        s = summary[summary["arm"] == arm].sort_values("level")
        np.testing.assert_allclose(line.get_xdata(), s["level"].to_numpy())
        np.testing.assert_allclose(line.get_ydata(), s["mean"].to_numpy())
        np.testing.assert_allclose(line.get_ydata(), MEANS[arm], atol=1e-12)
        assert line.get_marker() not in (None, "", "None")
    # chance line
    chance = [l for l in ax.get_lines() if l.get_gid() == "chance"]
    assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 0.1)


def test_legend_order_and_stable_styles(frames):
    summary, comparisons = frames
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_noise_robustness(ax, summary, comparisons)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Baseline (None)", "Neural (model)", "Shuffle", "my_new_arm"]
    lines = _arm_lines(ax)
    for arm in ("none", "neural_model", "shuffle"):
        assert lines[arm].get_color() == ARM_STYLE[arm]["color"]
    assert order_arms(["vgg", "shuffle", "zeta", "none", "neural_data", "neural_model"]) == [
        "none", "neural_model", "neural_data", "shuffle", "vgg", "zeta",
    ]


def test_stars_only_where_arm_beats_baseline(frames):
    summary, comparisons = frames
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_noise_robustness(ax, summary, comparisons)
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    expected = comparisons[(comparisons["p"] < 0.05) & (comparisons["difference"] > 0)]
    assert set(expected["arm"]) == {"neural_model"}
    assert set(expected["level"]) == {0.1, 0.2}
    assert len(stars) == len(expected)
    # each star sits above its point (mean + sem)
    for star in stars:
        x, y = star.get_position()
        s = summary[(summary["arm"] == "neural_model") & (summary["level"] == x)].iloc[0]
        assert y > s["mean"] + s["sem"]
        assert star.get_text() in ("*", "**")
    # no comparisons -> no stars
    fig2 = Figure()
    FigureCanvasAgg(fig2)
    ax2 = fig2.add_subplot()
    draw_noise_robustness(ax2, summary, None)
    assert not [t for t in ax2.texts if t.get_gid() == STAR_GID]


def test_draw_rejects_unfiltered_summary():
    df = tidy()
    two = pd.concat([df, df.assign(metric="loss")], ignore_index=True)
    fig = Figure()
    FigureCanvasAgg(fig)
    with pytest.raises(ValueError, match="one row per"):
        draw_noise_robustness(fig.add_subplot(), summarise(two), None)


def test_plot_writes_pdf_and_png_atomically(tmp_path, frames):
    summary, comparisons = frames
    out_dir = tmp_path / "figures" / "demo"
    out_pdf = out_dir / "noise_robustness.pdf"
    out_png = out_dir / "noise_robustness.png"
    FIGURES["noise_robustness"](
        summary,
        comparisons,
        title="Noise robustness (demo)",
        note="Simulated V1: a positive control, not biological data; n=5 seeds, mean ± SEM",
        out_pdf=out_pdf,
        out_png=out_png,
        chance=0.1,
    )
    assert out_pdf.read_bytes()[:4] == b"%PDF"
    img = mpimg.imread(out_png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert float(np.std(img)) > 0
    # only the two outputs, no temp files left behind
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "noise_robustness.pdf", "noise_robustness.png",
    ]
    # re-render over existing files (os.replace) and deterministic PDF
    first = out_pdf.read_bytes()
    plot_noise_robustness(
        summary, comparisons, title="Noise robustness (demo)",
        note="Simulated V1: a positive control, not biological data; n=5 seeds, mean ± SEM",
        out_pdf=str(out_pdf), out_png=str(out_png), chance=0.1,
    )
    assert out_pdf.read_bytes() == first
    assert len(list(out_dir.iterdir())) == 2


def test_failed_render_leaves_nothing(tmp_path, frames):
    summary, comparisons = frames
    with pytest.raises(ValueError):
        plot_noise_robustness(
            summary.drop(columns="sem"), comparisons, title="t", note="n",
            out_pdf=tmp_path / "x.pdf", out_png=tmp_path / "x.png",
        )
    assert list(tmp_path.iterdir()) == []


def test_stars_of_several_arms_stack_without_overlap():
    df = tidy()
    extra = df[df["arm"] == "neural_model"].assign(
        arm="neural_data", value=lambda d: d["value"] - 0.03
    )
    df = pd.concat([df, extra], ignore_index=True)
    summary, comparisons = summarise(df), compare_to_baseline(df)
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_noise_robustness(ax, summary, comparisons)
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    assert len(stars) == 4  # two arms x levels 0.1 and 0.2
    positions = [t.get_position() for t in stars]
    assert len(set(positions)) == len(positions)
    for x, y in positions:
        top = (summary.loc[summary["level"] == x, "mean"] + summary.loc[summary["level"] == x, "sem"]).max()
        assert y > top
        assert y < ax.get_ylim()[1]


# -- marks from the adjusted p, in the direction that is better --------------------------------------
def test_stars_use_the_adjusted_p():
    df = tidy()
    # neural_data: the baseline + 0.025 + noise, raw one-tailed p ~ 0.02 at every level
    extra = df[df["arm"] == "none"].assign(arm="neural_data", value=lambda d: d["value"] + 0.025)
    extra["value"] += np.tile([0.01, -0.01, 0.0, 0.005, -0.005], len(LEVELS))
    df = pd.concat([df, extra], ignore_index=True)
    raw = compare_to_baseline(df, test="welch", correction="none")
    holm = compare_to_baseline(df, test="welch", correction="holm")
    # a comparison whose raw p earns a star that the Holm-adjusted p takes away
    lost = holm[(holm["p"] < 0.05) & (holm["p_adjusted"] >= 0.05) & (holm["difference"] > 0)]
    assert len(lost) >= 1

    def stars(comparisons):
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        draw_noise_robustness(ax, summarise(df), comparisons)
        return [t for t in ax.texts if t.get_gid() == STAR_GID]

    n_raw = len(raw[(raw["p"] < 0.05) & (raw["difference"] > 0)])
    n_holm = len(holm[(holm["p_adjusted"] < 0.05) & (holm["difference"] > 0)])
    assert n_holm < n_raw
    assert len(stars(raw)) == n_raw
    assert len(stars(holm)) == n_holm


def test_stars_follow_the_better_direction():
    from neurobias.figures.noise_robustness import significant_better
    comparisons = pd.DataFrame({"arm": ["a", "b", "c"], "level": [0.0] * 3, "difference": [0.2, -0.2, -0.2],
                                "p": [0.001] * 3, "p_adjusted": [0.01, 0.01, 0.2],
                                "better": ["higher", "lower", "lower"]})
    assert list(significant_better(comparisons)["arm"]) == ["a", "b"]
    # tables without p_adjusted/better: raw p, higher is better
    assert list(significant_better(comparisons.drop(columns=["p_adjusted", "better"]))["arm"]) == ["a"]
