"""Adversarial-robustness figure (Li et al. 2019, section 4.2).

Two panels, median minimal L2 and median minimal L-infinity perturbation size ([0, 1] pixel
units; larger = more robust). Per arm: one point per training seed (the model's median over
the attacked images, from :func:`neurobias.robustness.adversarial.perturbation_records`), a
bar at the mean over seeds with a mean +/- SEM error bar, and a star (Federer's marks) above
arms that beat the baseline (one-tailed test of :func:`neurobias.stats.compare_to_baseline`,
adjusted p below ``alpha`` and the difference in the better direction).

Arms are ordered and coloured as in every other figure (:data:`ARM_STYLE`,
:func:`order_arms` of :mod:`neurobias.figures.noise_robustness`).

Layers, as in :mod:`~neurobias.figures.noise_robustness`:

* :func:`draw_adversarial` draws onto given axes and returns them (what the tests inspect);
* :func:`plot_adversarial` builds the figure, adds title and caption and writes PDF + PNG
  atomically (temp file in the target directory, then :func:`os.replace`).

Artist ids (``gid``): per-seed points ``"seeds:<arm>"``, mean bar ``"mean:<arm>"``, error bar
``"sem:<arm>"``, stars ``"significance"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .noise_robustness import STAR_GID, arm_style, order_arms, save_figure, significant_better

__all__ = ["METRICS", "METRIC_LABELS", "draw_adversarial", "plot_adversarial"]

#: Metrics drawn, one panel each, in order.
METRICS: tuple[str, ...] = ("median_l2", "median_linf")
METRIC_LABELS: dict[str, str] = {
    "median_l2": "Median min. L2 perturbation",
    "median_linf": "Median min. L\u221e perturbation",
}
SEEDS_GID_PREFIX = "seeds:"
MEAN_GID_PREFIX = "mean:"
SEM_GID_PREFIX = "sem:"


def _seed_offsets(n: int, width: float = 0.3) -> np.ndarray:
    """Deterministic horizontal spread of n seed points around the arm's position."""
    if n <= 1:
        return np.zeros(n)
    return np.linspace(-width / 2, width / 2, n)


def _panel_frame(tidy: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = tidy[tidy["metric"] == metric]
    dup = d.duplicated(subset=["arm", "seed"], keep=False)
    if dup.any():
        example = d.loc[dup, ["arm", "seed"]].iloc[0].to_dict()
        raise ValueError(
            f"tidy_per_model must have one {metric!r} row per (arm, seed) -- filter it to one "
            f"study/evaluation/condition first; duplicated e.g. {example}"
        )
    return d


def draw_adversarial(
    axes: Sequence[Axes],
    tidy_per_model: pd.DataFrame,
    tests: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] = METRICS,
    alpha: float = 0.05,
) -> Sequence[Axes]:
    """Draw one panel per metric onto ``axes`` (same length as ``metrics``) and return them.

    Parameters
    ----------
    tidy_per_model
        Tidy rows (``arm, seed, metric, value``; other columns ignored) of one study and one
        attack, one row per (arm, seed, metric).
    tests
        :func:`neurobias.stats.compare_to_baseline` output for the same rows (``metric, arm, p,
        difference``; ``p_adjusted``, ``better`` and ``significance`` (the star text) used if
        present), or None.
    metrics
        Which metrics to draw (default median L2 and median L-infinity).

    Non-finite values (a seed whose median is +inf, i.e. the attack failed on at least half of
    the images) are not drawn and not averaged; the panel says how many were left out.
    """
    missing = [c for c in ("arm", "seed", "metric", "value") if c not in tidy_per_model.columns]
    if missing:
        raise ValueError(f"tidy_per_model: missing column(s) {missing}")
    axes = list(axes)
    if len(axes) != len(metrics):
        raise ValueError(f"need one axes per metric: {len(axes)} axes for {list(metrics)}")
    if tests is not None and len(tests):
        for col in ("metric", "arm", "p", "difference"):
            if col not in tests.columns:
                raise ValueError(f"tests: missing column {col!r}")

    frames = {m: _panel_frame(tidy_per_model, m) for m in metrics}
    present = pd.concat(frames.values())
    if present.empty:
        raise ValueError(f"tidy_per_model has no rows with metric in {list(metrics)}: nothing to plot")
    arms = order_arms(present["arm"].tolist())
    xpos = {arm: float(i) for i, arm in enumerate(arms)}

    for ax, metric in zip(axes, metrics):
        d = frames[metric]
        tops: dict[str, float] = {}
        n_dropped = 0
        for arm in arms:
            a = d[d["arm"] == arm].sort_values("seed")
            values = pd.to_numeric(a["value"]).to_numpy(dtype=float)
            finite = np.isfinite(values)
            n_dropped += int((~finite).sum())
            values = values[finite]
            if values.size == 0:
                continue
            style = arm_style(arm)
            x0 = xpos[arm]
            mean = float(values.mean())
            sem = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
            bars = ax.bar([x0], [mean], width=0.6, color=style["color"], alpha=0.25,
                          edgecolor=style["color"], linewidth=1.0, zorder=1, label="_nolegend_")
            for patch in bars.patches:
                patch.set_gid(f"{MEAN_GID_PREFIX}{arm}")
            if np.isfinite(sem):
                eb = ax.errorbar([x0], [mean], yerr=[sem], fmt="none", ecolor=style["color"],
                                 elinewidth=1.2, capsize=4, zorder=3, label="_nolegend_")
                for line in eb.lines[2]:
                    line.set_gid(f"{SEM_GID_PREFIX}{arm}")
            pts = ax.scatter(x0 + _seed_offsets(values.size), values, s=18, color=style["color"],
                             marker=style["marker"], edgecolors="white", linewidths=0.5, zorder=4,
                             label=style["label"])
            pts.set_gid(f"{SEEDS_GID_PREFIX}{arm}")
            tops[arm] = max(float(values.max()), mean + (sem if np.isfinite(sem) else 0.0))

        ylo, yhi = ax.get_ylim()
        ylo = 0.0
        if tests is not None and len(tests):
            t = tests[tests["metric"] == metric]
            sig = significant_better(t, alpha)
            offset = 0.03 * (yhi - ylo)
            for _, row in sig.iterrows():
                arm = row["arm"]
                if arm not in tops:
                    continue
                mark = str(row.get("significance", "") or "") or "*"
                y = tops[arm] + offset
                txt = ax.text(xpos[arm], y, mark, color=arm_style(arm)["color"], ha="center",
                              va="bottom", fontsize=11, fontweight="bold", zorder=5)
                txt.set_gid(STAR_GID)
                yhi = max(yhi, y + 3 * offset)
        ax.set_ylim(ylo, yhi)
        if n_dropped:
            ax.text(0.98, 0.98, f"{n_dropped} non-finite seed value(s) not shown",
                    transform=ax.transAxes, ha="right", va="top", fontsize="x-small", color="#B00000")
        ax.set_xticks([xpos[a] for a in arms])
        ax.set_xticklabels([arm_style(a)["label"] for a in arms], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    return axes


def plot_adversarial(
    tidy_per_model: pd.DataFrame,
    tests: pd.DataFrame | None,
    *,
    title: str,
    note: str,
    out_pdf: str | os.PathLike,
    out_png: str | os.PathLike,
    metrics: Sequence[str] = METRICS,
    alpha: float = 0.05,
    figsize: tuple[float, float] = (6.5, 3.6),
    dpi: int = 200,
) -> None:
    """Render the two-panel adversarial figure and write ``out_pdf`` and ``out_png``.

    Inputs as in :func:`draw_adversarial`; ``note`` is a caption under the axes (e.g. attack,
    number of images, seeds). Both files are written atomically; the PDF carries no creation
    date, so reruns give identical bytes.
    """
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        draw_adversarial(axes, tidy_per_model, tests, metrics=metrics, alpha=alpha)
        for ax in axes:
            sns.despine(ax=ax)
        save_figure(fig, out_pdf, out_png, note=note, title=title, dpi=dpi)
