"""Safarani et al. 2021's figures ("Towards robust vision by multi-task learning on monkey visual
cortex"): classifiers co-trained to predict monkey V1 responses, evaluated on Tiny-ImageNet-C style
corruptions (14 corruptions x 5 severities in four categories).

Inputs are the tables of :mod:`neurobias.stats`:

- Fig. 3A (:func:`plot_safarani_fig3a`): robustness score per corruption category (noise, blur,
  weather, digital), grouped bars per arm (baseline, MTL-Shuffled, MTL-Monkey, MTL-Oracle, Oracle;
  batch-ratio sweep arms are never drawn), bootstrap intervals from
  :func:`~neurobias.stats.bootstrap_robustness`, per-seed scores as points
  (:func:`~neurobias.stats.robustness_scores_per_seed`), dashed line at 1 (= baseline).
- Fig. 3B (:func:`plot_safarani_fig3b`): the overall score per arm, same encoding.
- Fig. 3C (:func:`plot_safarani_fig3c`): every model of the batch-ratio pools
  (:func:`~neurobias.stats.model_robustness_table`): robustness against neural prediction
  performance, colour = clean accuracy, one marker per pool, and the two-factor OLS fit
  (:func:`~neurobias.stats.two_factor_regression`) drawn at the pool's mean clean accuracy,
  annotated with the neural-prediction coefficient, t and p.
- Fig. 2 (:func:`plot_safarani_fig2`): example images for the corruptions where MTL-Monkey gains
  most, a median one and the one where it gains least relative to the baseline
  (:func:`select_example_corruptions`), clean and corrupted, titled with both models'
  predictions.  The images and predictions are inputs; nothing here runs a model.

Every panel's ``draw_*`` draws onto given axes and returns them (tests inspect the artists by
``gid``); the ``plot_*`` functions write PDF and PNG atomically via
:func:`~neurobias.figures.noise_robustness.save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .noise_robustness import arm_style, save_figure

__all__ = [
    "SAFARANI_ARMS",
    "CATEGORY_ORDER",
    "EXAMPLE_ROWS",
    "draw_category_scores",
    "draw_overall_scores",
    "draw_neural_regression",
    "draw_example_images",
    "select_example_corruptions",
    "plot_safarani_fig3a",
    "plot_safarani_fig3b",
    "plot_safarani_fig3c",
    "plot_safarani_fig2",
]

#: Arms drawn in Figs. 3A/B, in bar order; anything else (the batch-ratio sweep) is left out.
SAFARANI_ARMS: tuple[str, ...] = ("baseline", "mtl_shuffled", "mtl_monkey", "mtl_oracle", "oracle")
#: Corruption categories in x order (Hendrycks & Dietterich's grouping).
CATEGORY_ORDER: tuple[str, ...] = ("noise", "blur", "weather", "digital")
#: Rows of Fig. 2, top to bottom.
EXAMPLE_ROWS: tuple[str, ...] = ("best", "median", "worst")
#: Marker of each batch-ratio pool in Fig. 3C (colour encodes clean accuracy).
POOL_MARKERS: dict[str, str] = {"mtl_monkey": "o", "mtl_shuffled": "^"}
SCORE_LABEL = "Robustness score\n(relative to baseline = 1)"
REFERENCE_GID = "reference"
CMAP = "viridis"


# --------------------------------------------------------------------------- #
# Fig. 3A/B: scores with bootstrap intervals
# --------------------------------------------------------------------------- #
def _lookup(frame: pd.DataFrame | None, name: str, keys: Sequence[str], columns: Sequence[str]) -> dict:
    """``{key tuple: row}`` of a table that must have one row per key (one study)."""
    if frame is None or len(frame) == 0:
        return {}
    missing = [c for c in (*keys, *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")
    dup = frame.duplicated(subset=list(keys), keep=False)
    if dup.any():
        example = frame.loc[dup, list(keys)].iloc[0].to_dict()
        raise ValueError(f"{name} must have one row per {tuple(keys)} -- filter it to one study first; "
                         f"duplicated e.g. {example}")
    return {tuple(r[k] for k in keys): r for _, r in frame.iterrows()}


def _draw_bar(ax: Axes, x: float, width: float, arm: str, key: str, score: float, ci, seeds) -> None:
    """One bar (gid ``bar:<arm>:<key>``), its interval (``ci:<arm>:<key>``), its seeds (``seeds:...``)."""
    style = arm_style(arm)
    (patch,) = ax.bar([x], [score], width, color=style["color"], edgecolor="white", linewidth=0.5,
                      zorder=2).patches
    patch.set_gid(f"bar:{arm}:{key}")
    if ci is not None and np.isfinite(ci["ci_low"]) and np.isfinite(ci["ci_high"]):
        lo, hi = float(ci["ci_low"]), float(ci["ci_high"])
        ax.vlines([x], [lo], [hi], color="black", linewidth=1.0, zorder=4, gid=f"ci:{arm}:{key}")
        ax.hlines([lo, hi], x - width * 0.2, x + width * 0.2, color="black", linewidth=1.0, zorder=4,
                  gid=f"ci_cap:{arm}:{key}")
    if seeds is not None and len(seeds):
        offsets = np.linspace(-0.25, 0.25, len(seeds)) * width if len(seeds) > 1 else np.zeros(1)
        ax.scatter(x + offsets, seeds, s=9, facecolor="white", edgecolor="black", linewidth=0.6, zorder=5,
                   gid=f"seeds:{arm}:{key}")


def _present_arms(scores: pd.DataFrame, arms: Sequence[str]) -> list[str]:
    have = set(scores["arm"])
    return [a for a in arms if a in have]


def _seed_scores(per_seed: pd.DataFrame | None, arm: str, category: str):
    if per_seed is None or len(per_seed) == 0:
        return None
    missing = [c for c in ("arm", "seed", "category", "score") if c not in per_seed.columns]
    if missing:
        raise ValueError(f"per_seed: missing column(s) {missing}")
    f = per_seed[(per_seed["arm"] == arm) & (per_seed["category"] == category)].sort_values("seed")
    return f["score"].to_numpy(dtype=float)


def _finish_score_axes(ax: Axes, tops: list[float]) -> None:
    line = ax.axhline(1.0, color="#333333", linestyle="--", linewidth=0.9, zorder=3)
    line.set_gid(REFERENCE_GID)
    finite = [t for t in tops if np.isfinite(t)]
    ax.set_ylim(0.0, max([1.0, *finite]) * 1.1)
    ax.set_ylabel(SCORE_LABEL)


def draw_category_scores(ax: Axes, scores: pd.DataFrame, cis: pd.DataFrame | None = None,
                         per_seed: pd.DataFrame | None = None, *,
                         categories: Sequence[str] = CATEGORY_ORDER,
                         arms: Sequence[str] = SAFARANI_ARMS, width: float = 0.8,
                         legend: bool = True) -> Axes:
    """Fig. 3A: grouped bars, x = corruption category, one bar per arm within each group.

    ``scores``: :func:`~neurobias.stats.robustness_scores` of one study (one row per arm and
    category); ``cis``: :func:`~neurobias.stats.bootstrap_robustness` of the same study (drawn as
    vertical lines from ``ci_low`` to ``ci_high``); ``per_seed``:
    :func:`~neurobias.stats.robustness_scores_per_seed` (white points).  Only ``arms`` present in
    ``scores`` are drawn, in that order (sweep arms are not in it); categories missing from
    ``scores`` are left out.  Bar ``gid = "bar:<arm>:<category>"``, interval ``"ci:<arm>:<category>"``,
    points ``"seeds:<arm>:<category>"``, the dashed line at 1 ``"reference"``.
    """
    table = _lookup(scores, "scores", ("arm", "category"), ("score",))
    intervals = _lookup(cis, "cis", ("arm", "category"), ("ci_low", "ci_high"))
    cats = [c for c in categories if c in set(scores["category"])]
    present = _present_arms(scores, arms)
    if not cats or not present:
        raise ValueError(f"scores: nothing to draw (categories {list(categories)}, arms {list(arms)})")
    bar_w = width / len(present)
    tops: list[float] = []
    for j, arm in enumerate(present):
        for i, cat in enumerate(cats):
            row = table.get((arm, cat))
            if row is None:
                continue
            x = i + (j - (len(present) - 1) / 2) * bar_w
            ci = intervals.get((arm, cat))
            seeds = _seed_scores(per_seed, arm, cat)
            _draw_bar(ax, x, bar_w, arm, cat, float(row["score"]), ci, seeds)
            tops += [float(row["score"]), float(ci["ci_high"]) if ci is not None else np.nan,
                     *(seeds if seeds is not None else [])]
    ax.set_xticks(range(len(cats)), [c.capitalize() for c in cats])
    ax.set_xlabel("Corruption category")
    _finish_score_axes(ax, tops)
    if legend:
        handles = [Line2D([], [], color=arm_style(a)["color"], marker="s", linestyle="", markersize=7,
                          label=arm_style(a)["label"]) for a in present]
        ax.legend(handles=handles, frameon=False, fontsize="x-small", loc="upper left", ncols=min(3, len(present)))
    return ax


def draw_overall_scores(ax: Axes, scores: pd.DataFrame, cis: pd.DataFrame | None = None,
                        per_seed: pd.DataFrame | None = None, *, arms: Sequence[str] = SAFARANI_ARMS,
                        category: str = "all") -> Axes:
    """Fig. 3B: one bar per arm for the overall score (``category == "all"``), same encoding and
    gids as :func:`draw_category_scores` (``bar:<arm>:all`` etc.)."""
    table = _lookup(scores, "scores", ("arm", "category"), ("score",))
    intervals = _lookup(cis, "cis", ("arm", "category"), ("ci_low", "ci_high"))
    present = [a for a in _present_arms(scores, arms) if (a, category) in table]
    if not present:
        raise ValueError(f"scores: no {category!r} score for any of the arms {list(arms)}")
    tops: list[float] = []
    for i, arm in enumerate(present):
        ci = intervals.get((arm, category))
        seeds = _seed_scores(per_seed, arm, category)
        score = float(table[(arm, category)]["score"])
        _draw_bar(ax, i, 0.7, arm, category, score, ci, seeds)
        tops += [score, float(ci["ci_high"]) if ci is not None else np.nan, *(seeds if seeds is not None else [])]
    ax.set_xticks(range(len(present)), [arm_style(a)["label"] for a in present], rotation=30, ha="right")
    _finish_score_axes(ax, tops)
    return ax


# --------------------------------------------------------------------------- #
# Fig. 3C: robustness vs neural prediction across the batch-ratio pools
# --------------------------------------------------------------------------- #
def draw_neural_regression(ax: Axes, models: pd.DataFrame, regression: pd.DataFrame | None = None, *,
                           pools: Sequence[str] = ("mtl_monkey", "mtl_shuffled"),
                           x: str = "neural_prediction_r", y: str = "robustness",
                           color: str = "clean_accuracy", colorbar: bool = True) -> Axes:
    """Fig. 3C: one point per model of each pool, the fitted plane's line at the pool's mean controls.

    ``models``: :func:`~neurobias.stats.model_robustness_table` (columns ``pool, x, y, color``);
    ``regression``: :func:`~neurobias.stats.two_factor_regression` with ``by=("pool",)``.  For
    each pool with a fit the line is ``coef[Intercept] + coef[x] * x + sum_k coef[k] * x_mean[k]``
    over the other regressors ``k`` (clean accuracy), i.e. the fit at the pool's mean clean
    accuracy, drawn over the pool's range of ``x`` in the arm's colour (gid ``fit:<pool>``), and
    annotated (gid ``fit_text:<pool>``) with the coefficient of ``x``, its t and p (or the
    regression's note when the pool could not be fitted).  Points: gid ``models:<pool>``, colour
    = ``color`` on a shared scale (colorbar), marker per pool.  Models without ``x`` (arms
    without a neural head) are not drawn.
    """
    missing = [c for c in ("pool", x, y, color) if c not in models.columns]
    if missing:
        raise ValueError(f"models: missing column(s) {missing}")
    f = models[models["pool"].isin(pools)]
    f = f[np.isfinite(f[x].astype(float)) & np.isfinite(f[y].astype(float))]
    if f.empty:
        raise ValueError(f"models: no model of the pools {list(pools)} has both {x} and {y}")
    fit_rows = {}
    if regression is not None and len(regression):
        need = [c for c in ("pool", "term", "coef", "t", "p", "x_mean", "n", "note") if c not in regression.columns]
        if need:
            raise ValueError(f"regression: missing column(s) {need}")
        for pool, g in regression.groupby("pool", sort=False):
            fit_rows[pool] = g.set_index("term")
    values = f[color].astype(float)
    finite = values[np.isfinite(values)]
    norm = Normalize(float(finite.min()), float(finite.max())) if len(finite) else Normalize(0, 1)
    if norm.vmin == norm.vmax:
        norm = Normalize(norm.vmin - 0.01, norm.vmax + 0.01)
    handles, texts = [], 0
    for pool in pools:
        g = f[f["pool"] == pool]
        if g.empty:
            continue
        style = arm_style(pool)
        marker = POOL_MARKERS.get(pool, style["marker"])
        ax.scatter(g[x], g[y], c=g[color].astype(float), cmap=CMAP, norm=norm, marker=marker, s=30,
                   edgecolor=style["color"], linewidth=0.9, zorder=3, gid=f"models:{pool}")
        handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="white",
                              markeredgecolor=style["color"], color=style["color"],
                              label=f"{style['label']} (batch-ratio sweep)"))
        fit = fit_rows.get(pool)
        if fit is None or x not in fit.index:
            continue
        if np.isfinite(fit.loc[x, "coef"]):
            others = [t for t in fit.index if t not in ("Intercept", x)]
            offset = float(fit.loc["Intercept", "coef"]) + sum(
                float(fit.loc[t, "coef"]) * float(fit.loc[t, "x_mean"]) for t in others)
            xs = np.linspace(float(g[x].min()), float(g[x].max()), 50)
            ax.plot(xs, offset + float(fit.loc[x, "coef"]) * xs, color=style["color"], linewidth=1.5,
                    zorder=2, gid=f"fit:{pool}")
            text = (f"{style['label']}: b_neural = {fit.loc[x, 'coef']:.3g}, t = {fit.loc[x, 't']:.2f}, "
                    f"p = {fit.loc[x, 'p']:.2g} (n = {int(fit.loc[x, 'n'])})")
        else:
            text = f"{style['label']}: no fit ({fit.loc[x, 'note']})"
        ax.text(0.02, 0.98 - 0.07 * texts, text, transform=ax.transAxes, ha="left", va="top",
                fontsize="x-small", color=style["color"], gid=f"fit_text:{pool}")
        texts += 1
    if any((l.get_gid() or "").startswith("fit:") for l in ax.get_lines()):
        handles.append(Line2D([], [], color="#333333", label=f"OLS fit at the pool's mean {color.replace('_', ' ')}"))
    if colorbar:
        ax.figure.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=ax, label=color.replace("_", " ").capitalize())
    ax.set_xlabel("Neural prediction performance (mean Pearson r)" if x == "neural_prediction_r" else x)
    ax.set_ylabel("Robustness score" if y == "robustness" else y)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.08 * (texts + 1) * (hi - lo))  # room for the annotations
    ax.legend(handles=handles, frameon=False, fontsize="x-small", loc="lower right")
    return ax


# --------------------------------------------------------------------------- #
# Fig. 2: example images
# --------------------------------------------------------------------------- #
def select_example_corruptions(ratios: Mapping[str, float] | pd.Series) -> dict[str, str]:
    """``{"best", "median", "worst"}`` corruption from ``{corruption: A_c^mtl / A_c^baseline}``.

    Ranked by ratio, descending (ties by name); the median is the lower middle one.  The ratios
    are :func:`~neurobias.stats.robustness_scores` with one category per corruption
    (``categories={c: (c,) for c in corruptions}``), arm MTL-Monkey.
    """
    items = [(str(c), float(r)) for c, r in dict(ratios).items() if np.isfinite(r)]
    if not items:
        raise ValueError("select_example_corruptions: no finite ratio")
    ranked = [c for c, _ in sorted(items, key=lambda cr: (-cr[1], cr[0]))]
    return {"best": ranked[0], "median": ranked[(len(ranked) - 1) // 2], "worst": ranked[-1]}


def _image(img) -> tuple[np.ndarray, dict]:
    """uint8 [C, H, W] (C = 1 or 3) -> array for imshow and its keyword arguments."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"examples: images must be uint8 [C, H, W] with C = 1 or 3, got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 1:
        return arr[0], {"cmap": "gray", "vmin": 0, "vmax": 255}
    return np.transpose(arr, (1, 2, 0)), {}


def _records(examples) -> list[dict]:
    if isinstance(examples, pd.DataFrame):
        return examples.to_dict("records")
    if isinstance(examples, Mapping):
        keys = list(examples)
        return [dict(zip(keys, values)) for values in zip(*(examples[k] for k in keys))]
    return [dict(r) for r in examples]


def _prediction_title(record: dict, arms: Sequence[str], image: str) -> str:
    lines = []
    for arm in arms:
        pred = str(record[f"{arm}_{image}"])
        mark = "✓" if pred == str(record["label"]) else "✗"
        lines.append(f"{arm_style(arm)['label']}: {pred} {mark}")
    return "\n".join(lines)


def draw_example_images(axes, examples, *, arms: Sequence[str] = ("baseline", "mtl_monkey")) -> np.ndarray:
    """Fig. 2: a grid, rows = examples (``best``, ``median``, ``worst`` first), columns = clean and
    corrupted image.

    ``examples``: a DataFrame, a list of dicts or a dict of lists with, per row, ``row`` (best /
    median / worst), ``corruption``, ``severity``, ``label`` (true class name), ``clean_image`` and
    ``corrupted_image`` (uint8 [C, H, W], C = 1 grey or 3), and for each arm ``<arm>_clean`` and
    ``<arm>_corrupted`` (predicted class names); optional ``ratio`` (A_c^mtl / A_c^baseline) is
    shown in the row label.  Each image's title lists every arm's prediction with ✓ (correct) or
    ✗; images have gid ``image:<row>:clean`` / ``image:<row>:corrupted``.  ``axes``: array of
    shape (n_rows, 2); returned.
    """
    records = _records(examples)
    need = ["row", "corruption", "severity", "label", "clean_image", "corrupted_image",
            *(f"{a}_{i}" for a in arms for i in ("clean", "corrupted"))]
    for r in records:
        missing = [c for c in need if c not in r]
        if missing:
            raise ValueError(f"examples: missing column(s) {missing}")
    order = {name: i for i, name in enumerate(EXAMPLE_ROWS)}
    records = sorted(records, key=lambda r: order.get(str(r["row"]), len(order)))
    axes = np.asarray(axes).reshape(-1, 2)
    if len(records) != axes.shape[0]:
        raise ValueError(f"examples: {len(records)} rows for {axes.shape[0]} rows of axes")
    for r, (ax_clean, ax_corr) in zip(records, axes):
        for ax, which in ((ax_clean, "clean"), (ax_corr, "corrupted")):
            arr, kw = _image(r[f"{which}_image"])
            ax.imshow(arr, interpolation="nearest", gid=f"image:{r['row']}:{which}", **kw)
            ax.set_title(_prediction_title(r, arms, which), fontsize="x-small")
            ax.set_xticks([])
            ax.set_yticks([])
        ratio = r.get("ratio")
        ratio_text = f"\nratio {float(ratio):.2f}" if ratio is not None and np.isfinite(float(ratio)) else ""
        ax_clean.set_ylabel(f"{str(r['row']).capitalize()}: {str(r['corruption']).replace('_', ' ')}\n"
                            f"severity {r['severity']}, true: {r['label']}{ratio_text}", fontsize="x-small")
    if len(axes):
        axes[0, 0].text(0.5, 1.35, "Clean", transform=axes[0, 0].transAxes, ha="center", va="bottom",
                        fontweight="bold", fontsize="small")
        axes[0, 1].text(0.5, 1.35, "Corrupted", transform=axes[0, 1].transAxes, ha="center", va="bottom",
                        fontweight="bold", fontsize="small")
    return axes


# --------------------------------------------------------------------------- #
# files
# --------------------------------------------------------------------------- #
def _render(draw, *, title, note, out_pdf, out_png, figsize, dpi, nrows=1, ncols=1) -> None:
    with sns.axes_style("ticks"), sns.plotting_context("paper"):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        draw(axes)
        save_figure(fig, out_pdf, out_png, note=note, title=title, dpi=dpi)


def plot_safarani_fig3a(scores: pd.DataFrame, cis: pd.DataFrame | None = None, *,
                        per_seed: pd.DataFrame | None = None, title: str | None, note: str,
                        out_pdf: str | os.PathLike, out_png: str | os.PathLike,
                        categories: Sequence[str] = CATEGORY_ORDER, arms: Sequence[str] = SAFARANI_ARMS,
                        figsize: tuple[float, float] = (6.4, 3.8), dpi: int = 200) -> None:
    """Fig. 3A to ``out_pdf``/``out_png`` (inputs as in :func:`draw_category_scores`)."""
    def draw(axes):
        draw_category_scores(axes[0, 0], scores, cis, per_seed, categories=categories, arms=arms)
        sns.despine(ax=axes[0, 0])
    _render(draw, title=title, note=note, out_pdf=out_pdf, out_png=out_png, figsize=figsize, dpi=dpi)


def plot_safarani_fig3b(scores: pd.DataFrame, cis: pd.DataFrame | None = None, *,
                        per_seed: pd.DataFrame | None = None, title: str | None, note: str,
                        out_pdf: str | os.PathLike, out_png: str | os.PathLike,
                        arms: Sequence[str] = SAFARANI_ARMS, figsize: tuple[float, float] = (3.8, 3.8),
                        dpi: int = 200) -> None:
    """Fig. 3B to ``out_pdf``/``out_png`` (inputs as in :func:`draw_overall_scores`)."""
    def draw(axes):
        draw_overall_scores(axes[0, 0], scores, cis, per_seed, arms=arms)
        sns.despine(ax=axes[0, 0])
    _render(draw, title=title, note=note, out_pdf=out_pdf, out_png=out_png, figsize=figsize, dpi=dpi)


def plot_safarani_fig3c(models: pd.DataFrame, regression: pd.DataFrame | None, *, title: str | None, note: str,
                        out_pdf: str | os.PathLike, out_png: str | os.PathLike,
                        pools: Sequence[str] = ("mtl_monkey", "mtl_shuffled"),
                        figsize: tuple[float, float] = (5.4, 4.2), dpi: int = 200) -> None:
    """Fig. 3C to ``out_pdf``/``out_png`` (inputs as in :func:`draw_neural_regression`)."""
    def draw(axes):
        draw_neural_regression(axes[0, 0], models, regression, pools=pools)
        sns.despine(ax=axes[0, 0])
    _render(draw, title=title, note=note, out_pdf=out_pdf, out_png=out_png, figsize=figsize, dpi=dpi)


def plot_safarani_fig2(examples, *, title: str | None, note: str, out_pdf: str | os.PathLike,
                       out_png: str | os.PathLike, arms: Sequence[str] = ("baseline", "mtl_monkey"),
                       dpi: int = 200) -> None:
    """Fig. 2 to ``out_pdf``/``out_png`` (inputs as in :func:`draw_example_images`)."""
    n = len(_records(examples))
    if not n:
        raise ValueError("examples: no rows")
    def draw(axes):
        draw_example_images(axes, examples, arms=arms)
    _render(draw, title=title, note=note, out_pdf=out_pdf, out_png=out_png,
            figsize=(4.6, 2.3 * n + 0.8), dpi=dpi, nrows=n, ncols=2)
