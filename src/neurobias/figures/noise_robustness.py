"""Noise-robustness figure (layout of Li et al. 2019, Fig. 4A).

x = noise level (std of additive Gaussian noise, [0, 1] pixel units),
y = test accuracy; one line with markers per regularisation arm, error bars =
SEM across seeds, stars above the points of arms that beat the baseline at that
level (one-tailed test from :func:`neurobias.stats.compare_to_baseline`, adjusted p),
an optional chance line, and a caption under the axes.

Two layers:

* :func:`draw_noise_robustness` draws onto a given Axes and returns it (pure
  drawing, no files -- what the tests inspect);
* :func:`plot_noise_robustness` builds a Figure, adds title and caption, and
  writes PDF + PNG atomically (tmp file in the same directory, then
  :func:`os.replace`), so a killed job never leaves a half-written figure.

Arm appearance is fixed by name in :data:`ARM_STYLE` so every figure in every
study uses the same colour for the same arm; unknown arms get a colour chosen
deterministically from their name (:func:`arm_style`).

Rendering uses the Agg canvas explicitly (``Figure`` + ``FigureCanvasAgg``, no
pyplot), so it is headless and thread-safe and never changes the caller's
global matplotlib backend or rcParams.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "ARM_STYLE",
    "ARM_ORDER",
    "arm_style",
    "order_arms",
    "draw_noise_robustness",
    "plot_noise_robustness",
]

#: Fixed appearance per arm name (Okabe--Ito colour-blind-safe palette).
ARM_STYLE: dict[str, dict[str, str]] = {
    "none": {"color": "#555555", "label": "Baseline (None)", "marker": "o"},
    "neural_model": {"color": "#0072B2", "label": "Neural (model)", "marker": "s"},
    "neural_data": {"color": "#D55E00", "label": "Neural (data)", "marker": "D"},
    "shuffle": {"color": "#009E73", "label": "Shuffle", "marker": "^"},
    "vgg": {"color": "#CC79A7", "label": "VGG", "marker": "v"},
    # Federer et al. 2020's teachers
    "no_neural": {"color": "#555555", "label": "No neural data (r = 0)", "marker": "o"},
    "v1": {"color": "#0072B2", "label": "V1", "marker": "s"},
    "v1_shuffled": {"color": "#009E73", "label": "V1 shuffled", "marker": "^"},
    "gaussian_v1_stats": {"color": "#D55E00", "label": "Gaussian (V1 stats)", "marker": "D"},
    "gaussian_other_stats": {"color": "#CC79A7", "label": "Gaussian (non-V1 stats)", "marker": "v"},
    # VOneBlock front ends (Dapello et al. 2020)
    "vone_v1": {"color": "#56B4E9", "label": "VOneBlock (V1 parameters)", "marker": "h"},
    "vone_uniform": {"color": "#E69F00", "label": "VOneBlock (uniform parameters)", "marker": "X"},
    # Safarani et al. 2021 (multi-task learning on monkey V1); sweep arms such as
    # "mtl_monkey.ratio2" are drawn by pool, not by these styles
    "baseline": {"color": "#555555", "label": "Baseline", "marker": "o"},
    "mtl_monkey": {"color": "#D55E00", "label": "MTL-Monkey", "marker": "D"},
    "mtl_shuffled": {"color": "#009E73", "label": "MTL-Shuffled", "marker": "^"},
    "mtl_oracle": {"color": "#0072B2", "label": "MTL-Oracle", "marker": "s"},
    "oracle": {"color": "#CC79A7", "label": "Oracle", "marker": "v"},
}

#: Legend order: these first, then any other arms alphabetically.
ARM_ORDER: tuple[str, ...] = ("none", "neural_model", "neural_data", "shuffle")

_FALLBACK_COLORS = ("#E69F00", "#56B4E9", "#F0E442", "#000000", "#8C564B", "#7F7F7F")
_FALLBACK_MARKERS = ("P", "X", "h", "*", "<", ">")

#: gid prefix of the data line of each arm (``"arm:<name>"``).
LINE_GID_PREFIX = "arm:"
#: gid of significance-star texts and of the chance line.
STAR_GID = "significance"
CHANCE_GID = "chance"


def arm_style(arm: str) -> dict[str, str]:
    """Colour, label and marker of an arm; stable across runs for unknown arms."""
    if arm in ARM_STYLE:
        return dict(ARM_STYLE[arm])
    h = zlib.crc32(str(arm).encode("utf-8"))  # unlike hash(), not salted per process
    return {
        "color": _FALLBACK_COLORS[h % len(_FALLBACK_COLORS)],
        "label": str(arm),
        "marker": _FALLBACK_MARKERS[h % len(_FALLBACK_MARKERS)],
    }


def order_arms(arms: Iterable[str]) -> list[str]:
    """Arms in legend order: :data:`ARM_ORDER` first, then the rest sorted."""
    arms = list(dict.fromkeys(arms))
    first = [a for a in ARM_ORDER if a in arms]
    rest = sorted((a for a in arms if a not in ARM_ORDER), key=str)
    return first + rest


def _check_one_row_per_arm_level(frame: pd.DataFrame, name: str) -> None:
    missing = [c for c in ("arm", "level") if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")
    dup = frame.duplicated(subset=["arm", "level"], keep=False)
    if dup.any():
        example = frame.loc[dup, ["arm", "level"]].iloc[0].to_dict()
        raise ValueError(
            f"{name} must have one row per (arm, level) -- filter it to a single "
            f"study/evaluation/condition/metric first; duplicated e.g. {example}"
        )


def significant_better(comparisons: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The rows of a :func:`neurobias.stats.compare_to_baseline` table whose arm beats the
    baseline: adjusted p (``p_adjusted``; raw ``p`` in tables without it) below ``alpha`` and the
    difference in the direction the ``better`` column names (higher where the column is absent)."""
    p = comparisons["p_adjusted"] if "p_adjusted" in comparisons.columns else comparisons["p"]
    lower = (comparisons["better"] == "lower").to_numpy() if "better" in comparisons.columns else False
    sign = np.where(lower, -1.0, 1.0)
    return comparisons[(p < alpha).to_numpy() & (sign * comparisons["difference"].to_numpy(float) > 0)]


def draw_noise_robustness(
    ax: Axes,
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None = None,
    chance: float | None = None,
    *,
    alpha: float = 0.05,
    ylabel: str = "Test accuracy",
    xlabel: str = "Noise level (std)",
) -> Axes:
    """Draw accuracy-vs-noise lines onto ``ax`` and return ``ax``.

    Parameters
    ----------
    ax
        Target axes.
    summary
        Output of :func:`neurobias.stats.summarise` filtered to one panel:
        columns ``arm, level, mean, sem`` with one row per (arm, level).
    comparisons
        Output of :func:`neurobias.stats.compare_to_baseline` for the same
        panel (columns ``arm, level, p, difference``; ``p_adjusted``,
        ``better`` and ``significance`` (the star text) used if present).  A
        star in the arm's colour is drawn where the adjusted p is below
        ``alpha`` and the arm beats the baseline (:func:`significant_better`); stars at one
        level are stacked (legend order) above the highest error bar there.
        ``None`` or empty: no stars.
    chance
        If given, a dashed horizontal line at this accuracy.

    Each arm's data line has ``gid = "arm:<arm name>"`` and its legend label
    from :data:`ARM_STYLE`; stars are texts with ``gid = "significance"``.
    """
    for col in ("mean", "sem"):
        if col not in summary.columns:
            raise ValueError(f"summary: missing column {col!r}")
    _check_one_row_per_arm_level(summary, "summary")
    if summary.empty:
        raise ValueError("summary is empty: nothing to plot")

    arms = order_arms(summary["arm"].tolist())
    points: dict[tuple[str, float], tuple[float, float]] = {}
    for arm in arms:
        d = summary[summary["arm"] == arm].sort_values("level")
        x = d["level"].to_numpy(dtype=float)
        y = d["mean"].to_numpy(dtype=float)
        e = d["sem"].to_numpy(dtype=float)
        style = arm_style(arm)
        (line,) = ax.plot(
            x,
            y,
            marker=style["marker"],
            color=style["color"],
            label=style["label"],
            linewidth=1.5,
            markersize=5,
            zorder=3,
        )
        line.set_gid(f"{LINE_GID_PREFIX}{arm}")
        if np.isfinite(e).any():
            bars = ax.errorbar(
                x,
                y,
                yerr=np.nan_to_num(e, nan=0.0),
                fmt="none",
                ecolor=style["color"],
                elinewidth=1.0,
                capsize=3,
                zorder=2,
                label="_nolegend_",
            )
            bars.set_label("_nolegend_")
        for xi, yi, ei in zip(x, y, e):
            points[(arm, float(xi))] = (float(yi), float(ei) if np.isfinite(ei) else 0.0)

    if chance is not None:
        chance_line = ax.axhline(
            chance, color="#999999", linestyle="--", linewidth=1.0, label="Chance", zorder=1
        )
        chance_line.set_gid(CHANCE_GID)

    ylo, yhi = ax.get_ylim()
    values = summary["mean"].to_numpy(dtype=float)
    if np.nanmin(values) >= 0 and np.nanmax(values) <= 1:  # proportions: fixed 0..1 frame
        ylo, yhi = 0.0, 1.05
    offset = 0.02 * (yhi - ylo)

    if comparisons is not None and len(comparisons):
        _check_one_row_per_arm_level(comparisons, "comparisons")
        for col in ("p", "difference"):
            if col not in comparisons.columns:
                raise ValueError(f"comparisons: missing column {col!r}")
        sig = significant_better(comparisons, alpha)
        # Stars of all arms at one level are stacked (legend order, coloured by
        # arm) above the highest error bar at that level, so they never sit on
        # another arm's line.
        step = 0.055 * (yhi - ylo)
        for level, at_level in sig.groupby("level", sort=True):
            level = float(level)
            tops = [y + e for (arm, x), (y, e) in points.items() if x == level]
            if not tops:
                continue
            y_star = max(tops) + offset
            marks = {row["arm"]: row for _, row in at_level.iterrows()}
            for arm in order_arms(marks):
                if (arm, level) not in points:
                    continue
                row = marks[arm]
                mark = str(row.get("significance", "") or "") or "*"
                text = ax.text(
                    level,
                    y_star,
                    mark,
                    color=arm_style(arm)["color"],
                    ha="center",
                    va="bottom",
                    fontsize=11,
                    fontweight="bold",
                    zorder=4,
                )
                text.set_gid(STAR_GID)
                y_star += step
            yhi = max(yhi, y_star + step)

    ax.set_ylim(ylo, yhi)
    levels = np.sort(summary["level"].astype(float).unique())
    if len(levels) <= 12:
        ax.set_xticks(levels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)

    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, frameon=False, loc="best", fontsize="small")
    return ax


def _atomic_savefig(fig: Figure, path: str | os.PathLike, fmt: str, **kwargs) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_figure(fig: Figure, out_pdf, out_png, *, note: str = "", title: str | None = None, dpi: int = 200) -> None:
    """Every paper figure ends here: optional title, the caption note under the axes, then PDF (no
    creation date, so reruns give identical bytes) and PNG, each written atomically."""
    if title is not None:
        fig.suptitle(title)
    if note:
        fig.supxlabel(note, fontsize="x-small", color="#444444", wrap=True)
    _atomic_savefig(fig, out_pdf, "pdf", metadata={"CreationDate": None})
    _atomic_savefig(fig, out_png, "png", dpi=dpi)


def plot_noise_robustness(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    *,
    title: str,
    note: str,
    out_pdf: str | os.PathLike,
    out_png: str | os.PathLike,
    chance: float | None = None,
    alpha: float = 0.05,
    ylabel: str = "Test accuracy",
    xlabel: str = "Noise level (std)",
    figsize: tuple[float, float] = (4.5, 3.8),
    dpi: int = 200,
) -> None:
    """Render the Fig. 4A-style panel and write ``out_pdf`` and ``out_png``.

    ``summary``/``comparisons``/``chance``/``alpha`` are as in
    :func:`draw_noise_robustness` (one panel: one row per arm and level).
    ``note`` is printed as a small caption under the axes, e.g.
    ``"Simulated V1: a positive control, not biological data; n=3 seeds,
    mean ± SEM"``.  Both files are written atomically (temp file in the target
    directory, then :func:`os.replace`); parent directories are created.  The
    PDF carries no creation date, so reruns give identical bytes.
    """
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        draw_noise_robustness(
            ax, summary, comparisons, chance, alpha=alpha, ylabel=ylabel, xlabel=xlabel
        )
        sns.despine(ax=ax)
        ax.set_title(title)
        save_figure(fig, out_pdf, out_png, note=note, dpi=dpi)
