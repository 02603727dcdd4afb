"""Brain-likeness vs robustness figures.

- Dapello et al. 2020 Fig. 1 layout (:func:`plot_dapello_fig1`): every trained model as a point,
  V1 explained variance of its best layer (x) against white-box accuracy (y; and, as Dapello also
  report, white-box accuracy divided by clean accuracy), coloured by arm and shaped by study, with
  the least-squares line and Pearson r, p, n across models.
- Geirhos et al. 2018 Fig. 3 layout (:func:`plot_geirhos_fig3`): one column per manipulation,
  accuracy (top) and response-distribution entropy in bits (bottom) against the manipulation's
  level, one line per arm, mean ± SEM over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .noise_robustness import arm_style, order_arms, save_figure

STUDY_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
Y_LABEL = {"white_box_accuracy": "White-box accuracy (PGD, mean over budgets)",
           "white_box_normalised": "White-box accuracy / clean accuracy",
           "gaussian_noise_accuracy": "Gaussian-noise accuracy (mean over σ > 0)",
           "manipulation_accuracy": "Accuracy under manipulations (mean)"}


def draw_dapello(ax: Axes, table: pd.DataFrame, x: str, y: str, correlation: dict | None = None) -> Axes:
    """Scatter of ``y`` against ``x`` over models with the least-squares line."""
    studies = sorted(table["study"].unique())
    for arm in order_arms(table["arm"].unique()):
        style = arm_style(arm)
        for i, study in enumerate(studies):
            f = table[(table["arm"] == arm) & (table["study"] == study)]
            if f.empty:
                continue
            ax.scatter(f[x], f[y], color=style["color"], marker=STUDY_MARKERS[i % len(STUDY_MARKERS)],
                       s=22, alpha=0.85, label=f"{style['label']} ({study})", gid=f"models:{study}:{arm}")
    pair = table[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(pair) >= 2 and pair[x].nunique() > 1:
        slope, intercept = np.polyfit(pair[x], pair[y], 1)
        xs = np.linspace(pair[x].min(), pair[x].max(), 50)
        ax.plot(xs, slope * xs + intercept, color="black", lw=1, gid="fit")
    if correlation is not None:
        ax.set_title(f"r = {correlation['r']:.2f}, p = {correlation['p']:.2g}, n = {int(correlation['n'])}",
                     fontsize="small")
    ax.set_xlabel(f"V1 explained variance, best layer ({x.removeprefix('v1_ev_')})")
    ax.set_ylabel(Y_LABEL.get(y, y))
    return ax


def plot_dapello_fig1(table: pd.DataFrame, correlations: pd.DataFrame, *, x: str, title: str, note: str,
                      out_pdf, out_png, dpi: int = 200) -> None:
    ys = [c for c in ("white_box_accuracy", "white_box_normalised", "gaussian_noise_accuracy") if c in table]
    ys = ys or [c for c in ("manipulation_accuracy",) if c in table]
    if not ys:
        raise ValueError("dapello figure: the model table has no robustness column (white-box, noise or "
                         "manipulations); add brain_likeness.white_box or .manipulations")
    pooled = correlations[correlations["study"] == "all"]
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=(4.6 * len(ys) + 2.4, 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(ys), squeeze=False)[0]
        for letter, ax, y in zip("ABC", axes, ys):
            row = pooled[(pooled["x"] == x) & (pooled["y"] == y)]
            draw_dapello(ax, table, x, y, row.iloc[0].to_dict() if len(row) else None)
            ax.text(-0.12, 1.04, letter, transform=ax.transAxes, fontweight="bold")
            sns.despine(ax=ax)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize="x-small", frameon=False)
        save_figure(fig, out_pdf, out_png, note=note, title=title, dpi=dpi)


def _level_order(levels) -> list:
    """Numeric levels ascending; otherwise the order of first appearance (e.g. colour, greyscale)."""
    levels = list(dict.fromkeys(levels))
    try:
        return sorted(levels, key=float)
    except (TypeError, ValueError):
        return levels


def draw_geirhos_panel(ax: Axes, tidy: pd.DataFrame, manipulation: str, metric: str) -> Axes:
    """One manipulation, one metric: mean ± SEM over seeds against level, one line per arm."""
    f = tidy[(tidy["condition"] == manipulation) & (tidy["metric"] == metric)].copy()
    f["level"] = f["level"].astype(str)
    order = _level_order(f["level"].unique())
    pos = {lv: i for i, lv in enumerate(order)}
    for arm in order_arms(f["arm"].unique()):
        g = f[f["arm"] == arm].groupby("level")["value"].agg(["mean", "sem"]).reindex(order)
        style = arm_style(arm)
        ax.errorbar([pos[lv] for lv in g.index], g["mean"], yerr=g["sem"], color=style["color"],
                    marker=style["marker"], ms=3, capsize=2, label=style["label"], gid=f"arm:{arm}")
    ax.set_xticks(range(len(order)), [_short(lv) for lv in order], rotation=45, fontsize="xx-small")
    ax.set_title(manipulation.replace("_", " "), fontsize="small")
    return ax


def _short(level: str) -> str:
    try:
        return f"{float(level):g}"
    except ValueError:
        return level


def plot_geirhos_fig3(tidy: pd.DataFrame, *, n_classes: int, title: str, note: str, out_pdf, out_png,
                      dpi: int = 200) -> None:
    tidy = tidy[tidy["evaluation"] == "manipulations"]
    manipulations = list(dict.fromkeys(tidy["condition"]))
    if not manipulations:
        raise ValueError("geirhos figure: no manipulation results")
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=(2.2 * len(manipulations) + 1.5, 5.2), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, len(manipulations), squeeze=False)
        for j, man in enumerate(manipulations):
            draw_geirhos_panel(axes[0, j], tidy, man, "accuracy")
            axes[0, j].axhline(1 / n_classes, color="#999999", ls=":", lw=0.8)
            axes[0, j].set_ylim(0, 1.02)
            draw_geirhos_panel(axes[1, j], tidy, man, "entropy_bits")
            axes[1, j].set_ylim(0, np.log2(n_classes) * 1.05)
            axes[1, j].set_title("")
            for ax in axes[:, j]:
                sns.despine(ax=ax)
        axes[0, 0].set_ylabel("Accuracy")
        axes[1, 0].set_ylabel(f"Response entropy (bits, max {np.log2(n_classes):.2f})")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize="x-small", frameon=False)
        save_figure(fig, out_pdf, out_png, note=note, title=title, dpi=dpi)
