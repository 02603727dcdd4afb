"""Federer et al. 2020's figures, from the learning-curve statistics.

Inputs are the tables of :func:`neurobias.jobs.stats_learning_curves`: ``summary`` (mean, SEM
and n per arm, fraction of corrupted labels (``level``), epoch and metric, with the arm's ``r``)
and ``tests`` (each arm vs the r = 0 baseline at the same fraction, at the final epoch only:
:func:`neurobias.stats.final_epoch_tests`, one-tailed in the direction that is better, Federer's
marks ``*`` p < 0.05 and ``**`` p < 0.001 on the adjusted p). The curves over epochs are
descriptive (mean ± SEM); their only marks sit on the final epoch's points.

Panel layout (the paper's text was not available to us; the panels follow the issue's list and
the plots of the authors' released code):

- Fig. 6A: final test accuracy vs fraction of corrupted training labels, with (teacher arm) and
  without (r = 0) neural data; 6B: test accuracy over epochs at the largest fraction;
  6C: generalisation error (training loss - test loss) over epochs, clean and largest fraction.
- Fig. 7A: final test accuracy per teacher variant (bars); 7B: generalisation error per teacher;
  7C: share of test errors inside the true superclass per teacher (datasets with superclasses);
  7D: final test accuracy vs r, the r = 0 baseline as a band.

Every panel's ``draw_*`` returns its axes (tests inspect them); the ``plot_*`` functions write PDF
and PNG atomically.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .noise_robustness import arm_style, save_figure

METRIC_LABEL = {
    "test_accuracy": "Test accuracy",
    "generalisation_error": "Generalisation error\n(train loss − test loss)",
    "within_superclass_error": "Errors within the\ntrue superclass (share)",
}
STAR_GID = "significance"


def _final_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["epoch"] == frame["epoch"].max()]


def _select(frame: pd.DataFrame, *, metric: str, arm=None, level=None, epoch=None) -> pd.DataFrame:
    f = frame[frame["metric"] == metric]
    if arm is not None:
        f = f[f["arm"].isin([arm] if isinstance(arm, str) else arm)]
    if level is not None:
        f = f[np.isclose(f["level"], level)]
    if epoch is not None:
        f = f[f["epoch"] == epoch]
    return f


def _mark(ax: Axes, x: float, y: float, mark: str) -> None:
    if mark and isinstance(mark, str):
        ax.annotate(mark, (x, y), textcoords="offset points", xytext=(0, 4), ha="center",
                    fontsize="small", gid=STAR_GID)


def _marks_for(tests: pd.DataFrame, *, metric: str, arm: str, level=None, epoch=None) -> dict:
    f = _select(tests, metric=metric, arm=arm, level=level, epoch=epoch)
    key = "level" if epoch is not None else "epoch"
    return dict(zip(f[key], f["significance"].fillna("")))


def _arm_marks(tests: pd.DataFrame, *, metric: str, arms, epoch) -> dict:
    """{arm: mark} on clean labels at one epoch."""
    f = _select(tests, metric=metric, arm=list(arms), level=0.0, epoch=epoch)
    return dict(zip(f["arm"], f["significance"].fillna("")))


def draw_accuracy_vs_label_noise(ax: Axes, summary, tests, *, baseline: str, teacher: str) -> Axes:
    """6A: final test accuracy vs fraction of corrupted labels, r = 0 vs the teacher arm."""
    last = summary["epoch"].max()
    for arm in (baseline, teacher):
        f = _select(summary, metric="test_accuracy", arm=arm, epoch=last).sort_values("level")
        style = arm_style(arm)
        ax.errorbar(f["level"], f["mean"], yerr=f["sem"], color=style["color"], marker=style["marker"],
                    label=style["label"], capsize=2, gid=f"arm:{arm}")
        if arm == teacher:
            marks = _marks_for(tests, metric="test_accuracy", arm=arm, epoch=last)
            for lv, m, s in zip(f["level"], f["mean"], f["sem"]):
                _mark(ax, lv, m + (s if np.isfinite(s) else 0), marks.get(lv, ""))
    ax.set_xlabel("Fraction of corrupted training labels")
    ax.set_ylabel(f"Test accuracy (epoch {last})")
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def draw_metric_over_epochs(ax: Axes, summary, tests, *, metric: str, arms, levels) -> Axes:
    """6B/6C: a metric over epochs, one line per (arm, fraction), mean ± SEM band."""
    for level in levels:
        for arm in arms:
            f = _select(summary, metric=metric, arm=arm, level=level).sort_values("epoch")
            if f.empty:
                continue
            style = arm_style(arm)
            dashed = len(levels) > 1 and level != levels[0]
            label = style["label"] + (f", {level:g} corrupted" if len(levels) > 1 else "")
            ax.plot(f["epoch"], f["mean"], color=style["color"], ls="--" if dashed else "-",
                    marker=style["marker"], ms=3, label=label, gid=f"arm:{arm}:{level:g}")
            ax.fill_between(f["epoch"], f["mean"] - f["sem"], f["mean"] + f["sem"], color=style["color"], alpha=0.15)
            marks = _marks_for(tests, metric=metric, arm=arm, level=level)
            for ep, m in zip(f["epoch"], f["mean"]):
                _mark(ax, ep, m, marks.get(ep, ""))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(METRIC_LABEL[metric])
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def draw_teacher_bars(ax: Axes, summary, tests, *, metric: str, arms) -> Axes:
    """7A-C: final value of a metric per teacher variant on clean labels, mean ± SEM, marks vs r = 0."""
    last = summary["epoch"].max()
    f = _select(summary, metric=metric, arm=list(arms), level=0.0, epoch=last).set_index("arm")
    present = [a for a in arms if a in f.index]
    if not present:
        ax.text(0.5, 0.5, "not measured on this dataset\n(no superclasses)", ha="center", va="center",
                transform=ax.transAxes, fontsize="small")
        ax.set_xticks([])
        ax.set_ylabel(METRIC_LABEL[metric])
        return ax
    marks = _arm_marks(tests, metric=metric, arms=present, epoch=last)
    for i, arm in enumerate(present):
        m, s = f.loc[arm, "mean"], f.loc[arm, "sem"]
        ax.bar(i, m, yerr=s, color=arm_style(arm)["color"], capsize=3, gid=f"arm:{arm}")
        _mark(ax, i, m + (s if np.isfinite(s) else 0), marks.get(arm, ""))
    ax.set_xticks(range(len(present)), [arm_style(a)["label"] for a in present], rotation=30, ha="right",
                  fontsize="x-small")
    ax.set_ylabel(METRIC_LABEL[metric])
    lo = float((f.loc[present, "mean"] - f.loc[present, "sem"].fillna(0)).min())
    hi = float((f.loc[present, "mean"] + f.loc[present, "sem"].fillna(0)).max())
    if metric != "generalisation_error":
        ax.set_ylim(max(0.0, lo - 0.1 * (hi - lo + 1e-3)), hi + 0.15 * (hi - lo + 1e-3))
    return ax


def draw_accuracy_vs_r(ax: Axes, summary, tests, *, baseline: str, arms) -> Axes:
    """7D: final test accuracy vs r (log axis) on clean labels; the r = 0 arm as a band."""
    last = summary["epoch"].max()
    f = _select(summary, metric="test_accuracy", arm=list(arms), level=0.0, epoch=last).sort_values("r")
    b = _select(summary, metric="test_accuracy", arm=baseline, level=0.0, epoch=last)
    if not b.empty:
        m, s = float(b["mean"].iloc[0]), float(b["sem"].iloc[0])
        ax.axhline(m, color=arm_style(baseline)["color"], label=arm_style(baseline)["label"])
        ax.axhspan(m - s, m + s, color=arm_style(baseline)["color"], alpha=0.15)
    ax.errorbar(f["r"], f["mean"], yerr=f["sem"], color="#0072B2", marker="o", capsize=2, label="V1 teacher",
                gid="arm:r_sweep")
    marks = _arm_marks(tests, metric="test_accuracy", arms=list(arms), epoch=last)
    for arm, r, m, s in zip(f["arm"], f["r"], f["mean"], f["sem"]):
        _mark(ax, r, m + (s if np.isfinite(s) else 0), marks.get(arm, ""))
    ax.set_xscale("log")
    ax.set_xlabel("r (weight of the neural term)")
    ax.set_ylabel(f"Test accuracy (epoch {last})")
    ax.legend(fontsize="x-small", frameon=False)
    return ax


def _render(panels, *, title, note, out_pdf, out_png, ncols, figsize, dpi=200) -> None:
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        for ax, (letter, draw) in zip(axes, panels):
            draw(ax)
            sns.despine(ax=ax)
            ax.set_title(letter, loc="left", fontweight="bold")
        save_figure(fig, out_pdf, out_png, note=note, title=title, dpi=dpi)


def plot_federer_fig6(summary, tests, *, roles: dict, title: str, note: str, out_pdf, out_png) -> None:
    """roles: baseline (r = 0 arm), teacher (the V1 arm), max_level (largest corrupted fraction)."""
    base, teacher, top = roles["baseline"], roles["teacher"], roles["max_level"]
    levels = [0.0] if top == 0 else [0.0, top]
    panels = [("A", lambda ax: draw_accuracy_vs_label_noise(ax, summary, tests, baseline=base, teacher=teacher)),
              ("B", lambda ax: draw_metric_over_epochs(ax, summary, tests, metric="test_accuracy",
                                                       arms=(base, teacher), levels=[top])),
              ("C", lambda ax: draw_metric_over_epochs(ax, summary, tests, metric="generalisation_error",
                                                       arms=(base, teacher), levels=levels))]
    _render(panels, title=title, note=note, out_pdf=out_pdf, out_png=out_png, ncols=3, figsize=(12, 4))


def plot_federer_fig7(summary, tests, *, roles: dict, title: str, note: str, out_pdf, out_png) -> None:
    """roles: baseline, teachers (arms in bar order, baseline first), r_arms (the r sweep)."""
    teachers, base = roles["teachers"], roles["baseline"]
    panels = [("A", lambda ax: draw_teacher_bars(ax, summary, tests, metric="test_accuracy", arms=teachers)),
              ("B", lambda ax: draw_teacher_bars(ax, summary, tests, metric="generalisation_error", arms=teachers)),
              ("C", lambda ax: draw_teacher_bars(ax, summary, tests, metric="within_superclass_error", arms=teachers)),
              ("D", lambda ax: draw_accuracy_vs_r(ax, summary, tests, baseline=base, arms=roles["r_arms"]))]
    _render(panels, title=title, note=note, out_pdf=out_pdf, out_png=out_png, ncols=4, figsize=(15, 4.2))
