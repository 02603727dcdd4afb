"""Safarani et al. 2021 figures (neurobias.figures.safarani): drawn artists equal the statistics; files are
written atomically."""

from __future__ import annotations

import warnings

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurobias.figures.noise_robustness import ARM_STYLE
from neurobias.figures.safarani import (
    REFERENCE_GID,
    SAFARANI_ARMS,
    draw_category_scores,
    draw_example_images,
    draw_neural_regression,
    draw_overall_scores,
    plot_safarani_fig2,
    plot_safarani_fig3a,
    plot_safarani_fig3b,
    plot_safarani_fig3c,
    select_example_corruptions,
)
from neurobias.robustness.corruptions import CATEGORIES
from neurobias.stats import (
    bootstrap_robustness,
    model_robustness_table,
    robustness_scores,
    robustness_scores_per_seed,
    two_factor_regression,
)

CATS = CATEGORIES  # noise, blur, weather, digital (Hendrycks & Dietterich's grouping)
CORRUPTIONS = [c for v in CATS.values() for c in v]
MAIN = ["baseline", "mtl_shuffled", "mtl_monkey", "mtl_oracle", "oracle"]
SWEEP = {"mtl_monkey.ratio0.5": ("mtl_monkey", 0.5), "mtl_monkey.ratio2": ("mtl_monkey", 2.0),
         "mtl_monkey.ratio4": ("mtl_monkey", 4.0), "mtl_shuffled.ratio0.5": ("mtl_shuffled", 0.5),
         "mtl_shuffled.ratio2": ("mtl_shuffled", 2.0), "mtl_shuffled.ratio4": ("mtl_shuffled", 4.0)}
GAIN = {"baseline": 0.0, "mtl_shuffled": 0.01, "mtl_monkey": 0.06, "mtl_oracle": 0.04, "oracle": 0.08,
        **{a: 0.02 * r for a, (_, r) in SWEEP.items()}}


@pytest.fixture(scope="module")
def study():
    """Per-image correctness of 11 arms x 3 seeds, the tidy table derived from it, and all statistics."""
    rng = np.random.default_rng(0)
    n_images = 300
    conditions = [("clean", 0)] + [(c, s) for c in CORRUPTIONS for s in range(1, 6)]
    difficulty = np.array([0.8] + [0.75 - 0.1 * s for _, s in conditions[1:]])
    correct, rows = {}, []
    for arm, gain in GAIN.items():
        for seed in range(3):
            p = np.clip(difficulty + gain + rng.normal(0, 0.01), 0, 1)
            arr = rng.random((len(conditions), n_images)) < p[:, None]
            correct[(arm, seed)] = arr
            for (c, level), acc in zip(conditions, arr.mean(axis=1)):
                cat = "clean" if c == "clean" else next(k for k, v in CATS.items() if c in v)
                rows.append(dict(study="safarani", arm=arm, seed=seed, evaluation="corruptions", condition=c,
                                 category=cat, level=level, metric="accuracy", value=float(acc)))
            has_head = arm.startswith("mtl_monkey") or arm.startswith("mtl_shuffled") or arm == "mtl_oracle"
            r = 0.2 + 2 * gain + rng.normal(0, 0.01) if has_head else np.nan
            rows.append(dict(study="safarani", arm=arm, seed=seed, evaluation="corruptions", condition="neural",
                             category="neural", level=0, metric="neural_prediction_r", value=r))
    tidy = pd.DataFrame(rows)
    arms = pd.DataFrame([dict(arm=a, base_arm=a, batch_ratio=1.0 if a.startswith("mtl") else np.nan) for a in MAIN]
                        + [dict(arm=a, base_arm=b, batch_ratio=r) for a, (b, r) in SWEEP.items()])
    scores = robustness_scores(tidy, "baseline", CATS)
    per_seed = robustness_scores_per_seed(tidy, "baseline", CATS)
    cis = bootstrap_robustness(correct, conditions, "baseline", CATS, repetitions=100, study="safarani")
    models = model_robustness_table(tidy, arms, "baseline", CATS)
    regression = two_factor_regression(models)
    return dict(scores=scores, per_seed=per_seed, cis=cis, models=models, regression=regression)


def _axes():
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _bars(ax):
    return {p.get_gid()[len("bar:"):]: p for p in ax.patches if (p.get_gid() or "").startswith("bar:")}


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def _check_bars_and_intervals(ax, scores, cis, arms, categories):
    bars = _bars(ax)
    assert set(bars) == {f"{a}:{c}" for a in arms for c in categories}
    for key, patch in bars.items():
        arm, cat = key.split(":")
        s = scores[(scores["arm"] == arm) & (scores["category"] == cat)].iloc[0]
        assert patch.get_height() == pytest.approx(s["score"], abs=1e-12)
        assert patch.get_y() == 0
        assert patch.get_facecolor()[:3] == pytest.approx(
            tuple(int(ARM_STYLE[arm]["color"][i:i + 2], 16) / 255 for i in (1, 3, 5)))
        ci = cis[(cis["arm"] == arm) & (cis["category"] == cat)].iloc[0]
        (segment,) = _collection(ax, f"ci:{arm}:{cat}").get_segments()
        x_mid = patch.get_x() + patch.get_width() / 2
        np.testing.assert_allclose(segment, [[x_mid, ci["ci_low"]], [x_mid, ci["ci_high"]]], atol=1e-12)
    return bars


def test_category_panel_bars_equal_scores_and_cis(study):
    ax = _axes()
    assert draw_category_scores(ax, study["scores"], study["cis"], study["per_seed"]) is ax
    bars = _check_bars_and_intervals(ax, study["scores"], study["cis"], MAIN, CATS)
    # sweep arms are in the tables but not drawn
    assert set(study["scores"]["arm"]) >= set(SWEEP)
    assert not [k for k in bars if ".ratio" in k]
    # groups: categories in order along x, arms in paper order within a group
    xs = {k: p.get_x() for k, p in bars.items()}
    for cat in CATS:
        assert [xs[f"{a}:{cat}"] for a in MAIN] == sorted(xs[f"{a}:{cat}"] for a in MAIN)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Noise", "Blur", "Weather", "Digital"]
    assert max(xs[f"{a}:noise"] for a in MAIN) < min(xs[f"{a}:blur"] for a in MAIN)
    # per-seed points and the reference line at 1
    pts = _collection(ax, "seeds:mtl_monkey:weather").get_offsets()
    expected = study["per_seed"].query("arm == 'mtl_monkey' and category == 'weather'").sort_values("seed")
    np.testing.assert_allclose(pts[:, 1], expected["score"])
    (ref,) = [l for l in ax.get_lines() if l.get_gid() == REFERENCE_GID]
    assert np.allclose(ref.get_ydata(), 1.0) and ref.get_linestyle() == "--"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [ARM_STYLE[a]["label"] for a in MAIN]


def test_category_panel_without_cis_and_missing_arms(study):
    ax = _axes()
    scores = study["scores"][study["scores"]["arm"].isin(["baseline", "mtl_monkey", "mtl_monkey.ratio2"])]
    draw_category_scores(ax, scores)
    assert set(_bars(ax)) == {f"{a}:{c}" for a in ("baseline", "mtl_monkey") for c in CATS}
    assert not [c for c in ax.collections if (c.get_gid() or "").startswith("ci:")]
    with pytest.raises(ValueError, match="one row per"):
        draw_category_scores(_axes(), pd.concat([scores, scores.assign(study="other")]))
    with pytest.raises(ValueError, match="ci_high"):
        draw_category_scores(_axes(), scores, study["cis"].drop(columns="ci_high"))


def test_overall_panel(study):
    ax = _axes()
    draw_overall_scores(ax, study["scores"], study["cis"], study["per_seed"])
    bars = _check_bars_and_intervals(ax, study["scores"], study["cis"], MAIN, ["all"])
    assert [k.split(":")[0] for k in sorted(bars, key=lambda k: bars[k].get_x())] == MAIN
    assert [t.get_text() for t in ax.get_xticklabels()] == [ARM_STYLE[a]["label"] for a in MAIN]
    assert bars["baseline:all"].get_height() == 1.0
    assert bars["mtl_monkey:all"].get_height() > bars["mtl_shuffled:all"].get_height()


def test_regression_panel(study):
    models, regression = study["models"], study["regression"]
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_neural_regression(ax, models, regression)
    assert len(fig.axes) == 2  # the colorbar
    for pool in ("mtl_monkey", "mtl_shuffled"):
        fit = regression[regression["pool"] == pool].set_index("term")
        assert fit["note"].eq("").all() and fit.loc["neural_prediction_r", "n"] == 12
        (line,) = [l for l in ax.get_lines() if l.get_gid() == f"fit:{pool}"]
        xs, ys = line.get_xdata(), line.get_ydata()
        slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
        assert slope == pytest.approx(fit.loc["neural_prediction_r", "coef"], rel=1e-9)
        pool_models = models[models["pool"] == pool]
        at_mean = (fit.loc["Intercept", "coef"] + fit.loc["neural_prediction_r", "coef"] * xs[0]
                   + fit.loc["clean_accuracy", "coef"] * pool_models["clean_accuracy"].mean())
        assert ys[0] == pytest.approx(at_mean, rel=1e-9)
        assert xs[0] == pytest.approx(pool_models["neural_prediction_r"].min())
        (text,) = [t for t in ax.texts if t.get_gid() == f"fit_text:{pool}"]
        coef = fit.loc["neural_prediction_r"]
        assert f"b_neural = {coef['coef']:.3g}" in text.get_text() and f"t = {coef['t']:.2f}" in text.get_text()
        assert f"p = {coef['p']:.2g}" in text.get_text()
        pts = _collection(ax, f"models:{pool}")
        np.testing.assert_allclose(np.sort(pts.get_offsets()[:, 0]), np.sort(pool_models["neural_prediction_r"]))
        np.testing.assert_allclose(pts.get_array(), pool_models["clean_accuracy"])  # colour = clean accuracy
    markers = {pool: _collection(ax, f"models:{pool}").get_paths()[0] for pool in ("mtl_monkey", "mtl_shuffled")}
    assert len(markers["mtl_monkey"].vertices) != len(markers["mtl_shuffled"].vertices)  # circle vs triangle
    # a pool that could not be fitted: points and a note, no line
    small = models[(models["pool"] == "mtl_monkey") & (models["seed"] == 0)].iloc[:3]
    ax2 = _axes()
    draw_neural_regression(ax2, small, two_factor_regression(small), pools=("mtl_monkey",), colorbar=False)
    assert not [l for l in ax2.get_lines() if (l.get_gid() or "").startswith("fit:")]
    (text,) = [t for t in ax2.texts if t.get_gid() == "fit_text:mtl_monkey"]
    assert "fewer than 4" in text.get_text()


def _img(c, value, h=8, w=8):
    return np.full((c, h, w), value, dtype=np.uint8)


def examples():
    return pd.DataFrame([
        dict(row="worst", corruption="fog", severity=3, label="tabby", clean_image=_img(3, 200),
             corrupted_image=_img(3, 90), baseline_clean="tabby", mtl_monkey_clean="tabby",
             baseline_corrupted="goldfish", mtl_monkey_corrupted="lynx", ratio=0.95),
        dict(row="best", corruption="gaussian_noise", severity=3, label="goldfish", clean_image=_img(1, 10),
             corrupted_image=_img(1, 120), baseline_clean="goldfish", mtl_monkey_clean="goldfish",
             baseline_corrupted="jellyfish", mtl_monkey_corrupted="goldfish", ratio=1.4),
        dict(row="median", corruption="pixelate", severity=3, label="bus", clean_image=_img(3, 30),
             corrupted_image=_img(3, 60), baseline_clean="trolleybus", mtl_monkey_clean="bus",
             baseline_corrupted="bus", mtl_monkey_corrupted="trolleybus", ratio=1.1),
    ])


def test_example_grid_titles_and_images():
    fig = Figure()
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a missing glyph for the check marks
        draw_example_images(axes, examples())
        fig.canvas.draw()
    assert "Best" in axes[0, 0].get_ylabel() and "gaussian noise" in axes[0, 0].get_ylabel()
    assert "Median" in axes[1, 0].get_ylabel() and "Worst" in axes[2, 0].get_ylabel()
    best = axes[0, 1].get_title()
    assert "Baseline: jellyfish ✗" in best and "MTL-Monkey: goldfish ✓" in best
    assert "Baseline: trolleybus ✗" in axes[1, 0].get_title() and "MTL-Monkey: bus ✓" in axes[1, 0].get_title()
    assert "goldfish" in axes[2, 1].get_title() and "lynx" in axes[2, 1].get_title()
    # grey images drawn 2-D with a grey map, colour images as H x W x 3
    (grey,) = axes[0, 1].get_images()
    assert grey.get_gid() == "image:best:corrupted" and grey.get_array().shape == (8, 8)
    assert grey.get_array()[0, 0] == 120
    (colour,) = axes[2, 0].get_images()
    assert colour.get_array().shape == (8, 8, 3)
    bad = examples()
    bad.at[0, "clean_image"] = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        draw_example_images(Figure().subplots(3, 2), bad)
    with pytest.raises(ValueError, match="mtl_monkey_clean"):
        draw_example_images(Figure().subplots(3, 2), examples().drop(columns="mtl_monkey_clean"))


def test_select_example_corruptions():
    ratios = {"fog": 0.9, "snow": 1.3, "pixelate": 1.1, "contrast": 1.0, "zoom_blur": float("nan")}
    assert select_example_corruptions(ratios) == {"best": "snow", "median": "pixelate", "worst": "fog"}
    assert select_example_corruptions(pd.Series({"a": 1.0})) == {"best": "a", "median": "a", "worst": "a"}


def _check_files(out_dir, stem):
    pdf, png = out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"
    assert pdf.read_bytes()[:4] == b"%PDF"
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and float(np.std(img)) > 0
    return pdf


def test_plot_functions_write_pdf_and_png(tmp_path, study):
    out = tmp_path / "figures" / "safarani"
    note = "Simulated correctness, not real results; n=3 seeds, 95% bootstrap CI over images and seeds"
    plot_safarani_fig3a(study["scores"], study["cis"], per_seed=study["per_seed"], title="Fig. 3A", note=note,
                        out_pdf=out / "fig3a.pdf", out_png=out / "fig3a.png")
    plot_safarani_fig3b(study["scores"], study["cis"], per_seed=study["per_seed"], title="Fig. 3B", note=note,
                        out_pdf=out / "fig3b.pdf", out_png=out / "fig3b.png")
    plot_safarani_fig3c(study["models"], study["regression"], title="Fig. 3C", note=note,
                        out_pdf=out / "fig3c.pdf", out_png=out / "fig3c.png")
    plot_safarani_fig2(examples(), title="Fig. 2", note=note, out_pdf=out / "fig2.pdf", out_png=out / "fig2.png")
    for stem in ("fig3a", "fig3b", "fig3c", "fig2"):
        _check_files(out, stem)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{e}" for s in ("fig3a", "fig3b", "fig3c", "fig2") for e in ("pdf", "png"))
    # deterministic PDF on a rerun, still no temp files
    first = (out / "fig3a.pdf").read_bytes()
    plot_safarani_fig3a(study["scores"], study["cis"], per_seed=study["per_seed"], title="Fig. 3A", note=note,
                        out_pdf=str(out / "fig3a.pdf"), out_png=str(out / "fig3a.png"))
    assert (out / "fig3a.pdf").read_bytes() == first
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failed_plot_leaves_nothing(tmp_path, study):
    with pytest.raises(ValueError):
        plot_safarani_fig3b(study["scores"].drop(columns="score"), None, title="t", note="n",
                            out_pdf=tmp_path / "x.pdf", out_png=tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_safarani_fig3c(study["models"].drop(columns="clean_accuracy"), None, title="t", note="n",
                            out_pdf=tmp_path / "y.pdf", out_png=tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []


def test_new_arm_styles_distinct():
    colours = [ARM_STYLE[a]["color"] for a in SAFARANI_ARMS]
    markers = [ARM_STYLE[a]["marker"] for a in SAFARANI_ARMS]
    assert len(set(colours)) == len(colours) and len(set(markers)) == len(markers)
