"""Safarani et al. 2021 statistics (neurobias.stats.safarani2021): robustness score, bootstrap intervals,
two-factor regression."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

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
CATEGORY_OF = {c: k for k, v in CATS.items() for c in v}
TINY_CATS = {"noise": ("gaussian_noise", "shot_noise"), "blur": ("defocus_blur",)}


def _row(arm, seed, condition, level, value, *, metric="accuracy", category=None, study="safarani"):
    if category is None:
        category = {"clean": "clean", "neural": "neural"}.get(condition, CATEGORY_OF.get(condition))
    return dict(study=study, arm=arm, seed=seed, evaluation="corruptions", condition=condition,
                category=category, level=level, metric=metric, value=value)


def tiny_tidy() -> pd.DataFrame:
    """Two severities, three corruptions, two seeds per arm -- numbers chosen for hand arithmetic."""
    acc = {  # (arm, seed, corruption) -> (severity 1, severity 2)
        ("baseline", 0, "gaussian_noise"): (0.6, 0.4),  # severity mean 0.5
        ("baseline", 1, "gaussian_noise"): (0.4, 0.2),  # 0.3 -> A = 0.4
        ("baseline", 0, "shot_noise"): (0.5, 0.5),      # 0.5
        ("baseline", 1, "shot_noise"): (0.5, 0.3),      # 0.4 -> A = 0.45
        ("baseline", 0, "defocus_blur"): (0.8, 0.6),    # 0.7
        ("baseline", 1, "defocus_blur"): (0.6, 0.6),    # 0.6 -> A = 0.65
        ("mtl_monkey", 0, "gaussian_noise"): (0.7, 0.5),  # 0.6
        ("mtl_monkey", 1, "gaussian_noise"): (0.6, 0.4),  # 0.5 -> A = 0.55
        ("mtl_monkey", 0, "shot_noise"): (0.5, 0.4),      # 0.45
        ("mtl_monkey", 1, "shot_noise"): (0.5, 0.4),      # 0.45 -> A = 0.45
        ("mtl_monkey", 0, "defocus_blur"): (0.7, 0.5),    # 0.6
        ("mtl_monkey", 1, "defocus_blur"): (0.8, 0.6),    # 0.7 -> A = 0.65
    }
    rows = []
    for (arm, seed, c), values in acc.items():
        for level, v in zip((1, 2), values):
            rows.append(_row(arm, seed, c, level, v, category={"defocus_blur": "blur"}.get(c, "noise")))
    for arm in ("baseline", "mtl_monkey"):
        for seed in (0, 1):
            rows.append(_row(arm, seed, "clean", 0, 0.9, category="clean"))
            rows.append(_row(arm, seed, "neural", 0, np.nan if arm == "baseline" else 0.3 + 0.1 * seed,
                             metric="neural_prediction_r", category="neural"))
    return pd.DataFrame(rows)


def _score(frame, arm, category, **keys):
    f = frame[(frame["arm"] == arm) & (frame["category"] == category)]
    for k, v in keys.items():
        f = f[f[k] == v]
    assert len(f) == 1, f
    return f.iloc[0]


# --------------------------------------------------------------------------- #
# robustness score
# --------------------------------------------------------------------------- #
def test_scores_match_hand_arithmetic():
    out = robustness_scores(tiny_tidy(), "baseline", TINY_CATS)
    assert list(out.columns) == ["study", "arm", "category", "score", "n_seeds", "n_corruptions"]
    assert list(out["category"].unique()) == ["all", "noise", "blur"]
    ratios = {"gaussian_noise": 0.55 / 0.4, "shot_noise": 0.45 / 0.45, "defocus_blur": 0.65 / 0.65}
    r = _score(out, "mtl_monkey", "noise")
    assert r["score"] == pytest.approx((ratios["gaussian_noise"] + ratios["shot_noise"]) / 2, abs=1e-12)
    assert r["n_corruptions"] == 2 and r["n_seeds"] == 2
    assert _score(out, "mtl_monkey", "blur")["score"] == pytest.approx(1.0, abs=1e-12)
    r = _score(out, "mtl_monkey", "all")
    assert r["score"] == pytest.approx(sum(ratios.values()) / 3, abs=1e-12)  # mean over corruptions
    assert r["n_corruptions"] == 3


def test_baseline_scores_exactly_one_and_doubling_scores_two():
    tidy = tiny_tidy()
    doubled = tidy[(tidy["arm"] == "baseline") & (tidy["metric"] == "accuracy")].assign(arm="double")
    doubled["value"] = doubled["value"] * 2
    out = robustness_scores(pd.concat([tidy, doubled]), "baseline", TINY_CATS)
    base = out[out["arm"] == "baseline"]
    assert (base["score"] == 1.0).all() and len(base) == 3
    np.testing.assert_allclose(out[out["arm"] == "double"]["score"], 2.0, rtol=1e-12)


def test_per_seed_scores():
    tidy = tiny_tidy()
    per = robustness_scores_per_seed(tidy, "baseline", TINY_CATS)
    assert list(per.columns) == ["study", "arm", "seed", "category", "score", "n_corruptions"]
    assert len(per) == 2 * 2 * 3
    # seed 0 of mtl_monkey on noise: (0.6/0.4 + 0.45/0.45) / 2 -- denominators are the baseline's seed means
    assert _score(per, "mtl_monkey", "noise", seed=0)["score"] == pytest.approx((1.5 + 1.0) / 2, abs=1e-12)
    assert _score(per, "baseline", "blur", seed=1)["score"] == pytest.approx(0.6 / 0.65, abs=1e-12)
    # balanced design: the seeds' mean is the arm's score
    arm = robustness_scores(tidy, "baseline", TINY_CATS)
    mean = per.groupby(["arm", "category"])["score"].mean()
    for _, r in arm.iterrows():
        assert mean[(r["arm"], r["category"])] == pytest.approx(r["score"], abs=1e-12)


def test_scores_ignore_clean_neural_and_other_evaluations():
    tidy = tiny_tidy()
    other = tidy.assign(evaluation="gaussian_noise", value=0.01)
    a = robustness_scores(tidy, "baseline", TINY_CATS)
    b = robustness_scores(pd.concat([tidy, other]).drop(columns="category"), "baseline", TINY_CATS)
    pd.testing.assert_frame_equal(a, b)


def test_scores_malformed_input():
    tidy = tiny_tidy()
    with pytest.raises(ValueError, match="'seed'"):
        robustness_scores(tidy.drop(columns="seed"), "baseline", TINY_CATS)
    with pytest.raises(ValueError, match="baseline arm 'nope'"):
        robustness_scores(tidy, "nope", TINY_CATS)
    with pytest.raises(ValueError, match="defocus_blur"):
        robustness_scores(tidy, "baseline", {"noise": TINY_CATS["noise"]})
    with pytest.raises(ValueError, match="repeat"):
        robustness_scores(pd.concat([tidy, tidy]), "baseline", TINY_CATS)
    wrong = tidy.assign(category=tidy["category"].replace({"blur": "noise"}))
    with pytest.raises(ValueError, match="disagrees"):
        robustness_scores(wrong, "baseline", TINY_CATS)
    with pytest.raises(ValueError, match="reserved"):
        robustness_scores(tidy, "baseline", {"all": ("gaussian_noise",)})


# --------------------------------------------------------------------------- #
# bootstrap
# --------------------------------------------------------------------------- #
def simulate(arms, seeds, n_images, corruptions, *, severities=(1, 2, 3, 4, 5), seed=0, seed_sd=0.0,
             clean=True):
    """Per-image correctness: each arm has a per-corruption accuracy, each seed a small offset."""
    rng = np.random.default_rng(seed)
    conditions = ([("clean", 0)] if clean else []) + [(c, s) for c in corruptions for s in severities]
    difficulty = rng.uniform(0.3, 0.7, size=len(conditions))
    correct = {}
    for i, arm in enumerate(arms):
        for s in range(seeds):
            p = np.clip(difficulty + 0.05 * i + rng.normal(0, seed_sd), 0.01, 0.99)
            correct[(arm, s)] = rng.random((len(conditions), n_images)) < p[:, None]
    return correct, conditions


def tidy_from_correct(correct, conditions, study="safarani"):
    rows = []
    for (arm, s), arr in correct.items():
        for (c, level), acc in zip(conditions, arr.mean(axis=1)):
            rows.append(_row(arm, s, c, level, float(acc), category="clean" if c == "clean" else CATEGORY_OF[c],
                             study=study))
    return pd.DataFrame(rows)


def reference_bootstrap(correct, conditions, baseline, categories, repetitions, seed, level):
    """Slow loop implementation with the documented draws: explicit resampled image lists."""
    rng = np.random.default_rng(seed)
    n = next(iter(correct.values())).shape[1]
    counts = rng.multinomial(n, np.full(n, 1 / n), size=repetitions)
    arms = sorted({a for a, _ in correct})
    seeds = {a: sorted(s for b, s in correct if b == a) for a in arms}
    draws = {a: rng.integers(0, len(seeds[a]), size=(repetitions, len(seeds[a]))) for a in arms}
    kept = [(k, c, sev) for k, (c, sev) in enumerate(conditions) if c != "clean"]
    corruptions = list(dict.fromkeys(c for _, c, _ in kept))
    cat_of = {c: k for k, v in categories.items() for c in v}
    samples = {(a, cat): [] for a in arms for cat in ["all", *categories]}
    for b in range(repetitions):
        images = np.repeat(np.arange(n), counts[b])  # the resampled test set
        A = {}
        for a in arms:
            chosen = [seeds[a][j] for j in draws[a][b]]
            for c in corruptions:
                per_seed = []
                for s in chosen:
                    accs = [correct[(a, s)][k, images].mean() for k, cc, _ in kept if cc == c]
                    per_seed.append(sum(accs) / len(accs))
                A[(a, c)] = sum(per_seed) / len(per_seed)
        for a in arms:
            for cat in ["all", *categories]:
                cs = [c for c in corruptions if cat == "all" or cat_of[c] == cat]
                samples[(a, cat)].append(sum(A[(a, c)] / A[(baseline, c)] for c in cs) / len(cs))
    q = ((1 - level) / 2, (1 + level) / 2)
    return {k: np.quantile(v, q) for k, v in samples.items()}


def test_bootstrap_matches_loop_reference():
    cats = {"noise": ("gaussian_noise", "shot_noise"), "blur": ("defocus_blur",)}
    correct, conditions = simulate(["baseline", "mtl_monkey", "mtl_shuffled"], 3, 40,
                                   ["gaussian_noise", "shot_noise", "defocus_blur"], severities=(1, 3), seed_sd=0.05)
    out = bootstrap_robustness(correct, conditions, "baseline", cats, repetitions=60, seed=7, level=0.9,
                               chunk_images=16)  # several image blocks
    ref = reference_bootstrap(correct, conditions, "baseline", cats, 60, 7, 0.9)
    assert len(out) == 3 * 3
    for _, r in out.iterrows():
        lo, hi = ref[(r["arm"], r["category"])]
        assert r["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert r["ci_high"] == pytest.approx(hi, abs=1e-12)


def test_bootstrap_point_estimate_equals_scores_and_ci_contains_it():
    correct, conditions = simulate(["baseline", "mtl_monkey", "oracle"], 3, 500, CORRUPTIONS, seed_sd=0.02)
    out = bootstrap_robustness(correct, conditions, "baseline", CATS, repetitions=200, study="safarani")
    assert list(out.columns) == ["study", "arm", "category", "score", "ci_low", "ci_high", "n_seeds",
                                 "n_corruptions", "n_images", "repetitions", "level"]
    scores = robustness_scores(tidy_from_correct(correct, conditions), "baseline", CATS)
    merged = out.merge(scores, on=["study", "arm", "category"], suffixes=("", "_tidy"))
    assert len(merged) == len(out) == 3 * 5
    np.testing.assert_allclose(merged["score"], merged["score_tidy"], rtol=1e-12)
    assert (merged["n_corruptions"] == merged["n_corruptions_tidy"]).all()
    assert ((out["ci_low"] <= out["score"]) & (out["score"] <= out["ci_high"])).all()
    base = out[out["arm"] == "baseline"]
    assert (base[["score", "ci_low", "ci_high"]] == 1.0).all().all()
    other = out[out["arm"] != "baseline"]
    assert (other["ci_high"] > other["ci_low"]).all()
    assert set(out["repetitions"]) == {200} and set(out["level"]) == {0.95} and set(out["n_images"]) == {500}


def test_ci_shrinks_with_more_images():
    widths = []
    for n in (200, 5000):
        correct, conditions = simulate(["baseline", "mtl_monkey"], 1, n, CORRUPTIONS, seed=3)
        out = bootstrap_robustness(correct, conditions, "baseline", CATS, repetitions=200)
        r = out[out["arm"] == "mtl_monkey"].set_index("category")
        widths.append((r["ci_high"] - r["ci_low"]).to_numpy())
    assert (widths[1] < widths[0] / 2).all()  # ~sqrt(25) = 5x narrower


def test_ci_covers_seed_variability():
    # many images, so image sampling is negligible; seeds of the arm differ a lot
    rng = np.random.default_rng(0)
    conditions = [("gaussian_noise", 1)]
    n = 20000
    correct = {("baseline", 0): rng.random((1, n)) < 0.5}
    for s, p in enumerate((0.4, 0.5, 0.6, 0.7)):
        correct[("mtl_monkey", s)] = rng.random((1, n)) < p
    out = bootstrap_robustness(correct, conditions, "baseline", {"noise": ("gaussian_noise",)}, repetitions=300)
    r = out[(out["arm"] == "mtl_monkey") & (out["category"] == "all")].iloc[0]
    # seed-mean ratio 1.1; resampling 4 seeds gives SD ~ 0.112/sqrt(4) / 0.5 ~ 0.11 -> width ~0.4
    assert r["ci_high"] - r["ci_low"] > 0.25
    single = {k: v for k, v in correct.items() if k[1] == 0}
    w1 = bootstrap_robustness(single, conditions, "baseline", {"noise": ("gaussian_noise",)}, repetitions=300)
    r1 = w1[(w1["arm"] == "mtl_monkey") & (w1["category"] == "all")].iloc[0]
    assert r1["ci_high"] - r1["ci_low"] < 0.1


def test_bootstrap_deterministic_and_seed_dependent():
    correct, conditions = simulate(["baseline", "mtl_monkey"], 2, 300, CORRUPTIONS[:4], seed_sd=0.03)
    cats = {k: v for k, v in CATS.items() if k in ("noise", "blur")}
    a = bootstrap_robustness(correct, conditions, "baseline", cats, repetitions=100, seed=1)
    b = bootstrap_robustness(dict(reversed(list(correct.items()))), conditions, "baseline", cats,
                             repetitions=100, seed=1)
    pd.testing.assert_frame_equal(a, b)  # dict order does not matter
    c = bootstrap_robustness(correct, conditions, "baseline", cats, repetitions=100, seed=2)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    np.testing.assert_array_equal(a["score"], c["score"])
    # categories without any condition get no row; 0/1 integer arrays are accepted
    assert set(a["category"]) == {"all", "noise", "blur"}
    d = bootstrap_robustness({k: v.astype(np.int8) for k, v in correct.items()}, conditions, "baseline", cats,
                             repetitions=100, seed=1)
    pd.testing.assert_frame_equal(a, d)


def test_bootstrap_agrees_with_independent_naive_bootstrap():
    """Distribution check against a bootstrap with its own draws (rng.choice of image indices)."""
    correct, conditions = simulate(["baseline", "mtl_monkey"], 1, 400, ["gaussian_noise", "snow"], seed=5)
    cats = {"noise": ("gaussian_noise",), "weather": ("snow",)}
    out = bootstrap_robustness(correct, conditions, "baseline", cats, repetitions=2000, seed=0)
    rng = np.random.default_rng(123)
    base, arm = correct[("baseline", 0)][1:], correct[("mtl_monkey", 0)][1:]
    samples = []
    for _ in range(2000):
        idx = rng.choice(400, size=400, replace=True)
        a_b = base[:, idx].mean(axis=1).reshape(2, 5).mean(axis=1)
        a_m = arm[:, idx].mean(axis=1).reshape(2, 5).mean(axis=1)
        samples.append((a_m / a_b).mean())
    lo, hi = np.quantile(samples, (0.025, 0.975))
    r = out[(out["arm"] == "mtl_monkey") & (out["category"] == "all")].iloc[0]
    width = hi - lo
    assert r["ci_high"] - r["ci_low"] == pytest.approx(width, rel=0.15)
    assert r["ci_low"] == pytest.approx(lo, abs=0.15 * width)
    assert r["ci_high"] == pytest.approx(hi, abs=0.15 * width)


def test_bootstrap_is_fast_at_paper_scale():
    correct, conditions = simulate(["baseline", "mtl_shuffled", "mtl_monkey", "mtl_oracle", "oracle"], 4, 10000,
                                   CORRUPTIONS, clean=False)
    assert len(correct) == 20 and len(conditions) == 75
    start = time.perf_counter()
    out = bootstrap_robustness(correct, conditions, "baseline", CATS, repetitions=250)
    elapsed = time.perf_counter() - start
    assert len(out) == 5 * 5
    assert elapsed < 15, elapsed  # ~0.3 s on two cores


def test_bootstrap_malformed_input():
    correct, conditions = simulate(["baseline", "mtl_monkey"], 1, 20, ["gaussian_noise"])
    cats = {"noise": ("gaussian_noise",)}
    with pytest.raises(ValueError, match="baseline arm 'none'"):
        bootstrap_robustness(correct, conditions, "none", cats)
    with pytest.raises(ValueError, match="shape"):
        bootstrap_robustness(correct, conditions[:-1], "baseline", cats)
    with pytest.raises(ValueError, match="snow"):
        bootstrap_robustness(correct, [*conditions[:-1], ("snow", 1)], "baseline", cats)
    bad = dict(correct)
    bad[("mtl_monkey", 0)] = bad[("mtl_monkey", 0)][:, :10]
    with pytest.raises(ValueError, match="images"):
        bootstrap_robustness(bad, conditions, "baseline", cats)
    with pytest.raises(ValueError, match="boolean"):
        bootstrap_robustness({k: v * 0.5 for k, v in correct.items()}, conditions, "baseline", cats)
    with pytest.raises(ValueError, match=r"\(arm, seed\)"):
        bootstrap_robustness({"baseline": correct[("baseline", 0)]}, conditions, "baseline", cats)
    with pytest.raises(ValueError, match="repeat"):
        bootstrap_robustness(correct, [conditions[1]] * len(conditions), "baseline", cats)


# --------------------------------------------------------------------------- #
# model table and regression
# --------------------------------------------------------------------------- #
def arms_table():
    return pd.DataFrame([
        dict(arm="baseline", base_arm="baseline", batch_ratio=np.nan),
        dict(arm="mtl_monkey", base_arm="mtl_monkey", batch_ratio=1.0),
        dict(arm="mtl_monkey.ratio2", base_arm="mtl_monkey", batch_ratio=2.0),
    ])


def test_model_robustness_table():
    tidy = tiny_tidy()
    sweep = tidy[tidy["arm"] == "mtl_monkey"].assign(arm="mtl_monkey.ratio2")
    tidy = pd.concat([tidy, sweep], ignore_index=True)
    table = model_robustness_table(tidy, arms_table(), "baseline", TINY_CATS)
    assert list(table.columns) == ["study", "arm", "seed", "base_arm", "batch_ratio", "pool", "clean_accuracy",
                                   "neural_prediction_r", "robustness"]
    assert len(table) == 6
    r = table[(table["arm"] == "mtl_monkey.ratio2") & (table["seed"] == 1)].iloc[0]
    assert r["pool"] == "mtl_monkey" and r["batch_ratio"] == 2.0
    assert r["clean_accuracy"] == pytest.approx(0.9) and r["neural_prediction_r"] == pytest.approx(0.4)
    # seed 1 of mtl_monkey: (0.5/0.4 + 0.45/0.45 + 0.7/0.65) / 3
    assert r["robustness"] == pytest.approx((0.5 / 0.4 + 1.0 + 0.7 / 0.65) / 3, abs=1e-12)
    assert table[table["arm"] == "baseline"]["neural_prediction_r"].isna().all()
    assert table[table["arm"] == "baseline"]["batch_ratio"].isna().all()
    with pytest.raises(ValueError, match="mtl_monkey.ratio2"):
        model_robustness_table(tidy, arms_table().iloc[:2], "baseline", TINY_CATS)
    with pytest.raises(ValueError, match="batch_ratio"):
        model_robustness_table(tidy, arms_table().drop(columns="batch_ratio"), "baseline", TINY_CATS)


def synthetic_models(n=60, seed=0, pool="mtl_monkey"):
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0.1, 0.5, n)
    x2 = rng.uniform(0.4, 0.8, n) + 0.3 * x1  # correlated regressors, as in the paper
    y = 1 + 2 * x1 - 0.5 * x2 + rng.normal(0, 0.05, n)
    return pd.DataFrame(dict(pool=pool, neural_prediction_r=x1, clean_accuracy=x2, robustness=y))


def test_regression_recovers_coefficients_and_matches_statsmodels():
    models = synthetic_models()
    out = two_factor_regression(models)
    assert list(out.columns) == ["pool", "term", "coef", "se", "t", "p", "ci_low", "ci_high", "beta", "x_mean",
                                 "r2", "adj_r2", "n", "df_resid", "f", "f_p", "note"]
    assert list(out["term"]) == ["Intercept", "neural_prediction_r", "clean_accuracy"]
    res = out.set_index("term")
    for term, true in (("Intercept", 1.0), ("neural_prediction_r", 2.0), ("clean_accuracy", -0.5)):
        assert abs(res.loc[term, "coef"] - true) < 3 * res.loc[term, "se"]
        assert res.loc[term, "ci_low"] < true < res.loc[term, "ci_high"]
    fit = smf.ols("robustness ~ neural_prediction_r + clean_accuracy", data=models).fit()
    ci = fit.conf_int()
    for term in res.index:
        np.testing.assert_allclose(
            res.loc[term, ["coef", "se", "t", "p", "ci_low", "ci_high"]].to_numpy(float),
            [fit.params[term], fit.bse[term], fit.tvalues[term], fit.pvalues[term], ci.loc[term, 0], ci.loc[term, 1]],
            rtol=1e-9)
    for col, value in (("r2", fit.rsquared), ("adj_r2", fit.rsquared_adj), ("f", fit.fvalue), ("f_p", fit.f_pvalue),
                       ("df_resid", fit.df_resid)):
        np.testing.assert_allclose(out[col], value, rtol=1e-9)
    assert (out["n"] == 60).all() and (out["note"] == "").all()
    # standardised coefficients = slopes of the fit on z-scored data
    z = (models[["robustness", "neural_prediction_r", "clean_accuracy"]]
         - models[["robustness", "neural_prediction_r", "clean_accuracy"]].mean()) / models[
        ["robustness", "neural_prediction_r", "clean_accuracy"]].std(ddof=1)
    zfit = sm.OLS(z["robustness"], sm.add_constant(z[["neural_prediction_r", "clean_accuracy"]])).fit()
    for term in ("neural_prediction_r", "clean_accuracy"):
        assert res.loc[term, "beta"] == pytest.approx(zfit.params[term], rel=1e-9)
        assert res.loc[term, "x_mean"] == pytest.approx(models[term].mean())
    assert np.isnan(res.loc["Intercept", "beta"]) and np.isnan(res.loc["Intercept", "x_mean"])
    # the 95% interval of a confidence level argument
    narrow = two_factor_regression(models, level=0.5).set_index("term")
    assert narrow.loc["neural_prediction_r", "ci_high"] - narrow.loc["neural_prediction_r", "ci_low"] < (
        res.loc["neural_prediction_r", "ci_high"] - res.loc["neural_prediction_r", "ci_low"])


def test_regression_per_pool_small_and_degenerate_pools():
    good = synthetic_models(40, seed=1)
    shuffled = synthetic_models(30, seed=2, pool="mtl_shuffled")
    tiny = synthetic_models(3, seed=3, pool="tiny")
    const = synthetic_models(10, seed=4, pool="const").assign(neural_prediction_r=0.2)
    nan_rows = synthetic_models(6, seed=5, pool="nans")
    nan_rows.loc[nan_rows.index[:3], "neural_prediction_r"] = np.nan  # 3 complete rows left
    out = two_factor_regression(pd.concat([good, shuffled, tiny, const, nan_rows], ignore_index=True))
    assert list(out["pool"].unique()) == sorted(["mtl_monkey", "mtl_shuffled", "tiny", "const", "nans"])
    assert len(out) == 5 * 3
    fitted = out[out["pool"].isin(["mtl_monkey", "mtl_shuffled"])]
    assert fitted["coef"].notna().all() and (fitted["note"] == "").all()
    assert fitted["p"].between(0, 1).all() and fitted["f_p"].between(0, 1).all()
    for pool, n, word in (("tiny", 3, "fewer than 4"), ("nans", 3, "fewer than 4"), ("const", 10, "constant")):
        f = out[out["pool"] == pool]
        assert f[["coef", "se", "t", "p", "ci_low", "ci_high", "beta", "r2", "f_p"]].isna().all().all()
        assert (f["n"] == n).all()
        assert f["note"].str.contains(word).all()
    # pools are independent fits
    alone = two_factor_regression(shuffled)
    np.testing.assert_allclose(alone["coef"], out[out["pool"] == "mtl_shuffled"]["coef"], rtol=1e-12)


def test_regression_p_values_in_unit_interval_without_effect():
    rng = np.random.default_rng(9)
    models = pd.DataFrame(dict(pool="p", neural_prediction_r=rng.normal(size=12), clean_accuracy=rng.normal(size=12),
                               robustness=rng.normal(size=12)))
    out = two_factor_regression(models)
    assert out["p"].between(0, 1).all() and out["f_p"].between(0, 1).all()


def test_regression_malformed_input():
    models = synthetic_models()
    with pytest.raises(ValueError, match="'clean_accuracy'"):
        two_factor_regression(models.drop(columns="clean_accuracy"))
    with pytest.raises(ValueError, match="'pool'"):
        two_factor_regression(models.drop(columns="pool"))
    with pytest.raises(ValueError, match="also a regressor"):
        two_factor_regression(models, y="clean_accuracy")
    # no grouping and one regressor work too
    out = two_factor_regression(models, x=("neural_prediction_r",), by=())
    assert list(out["term"]) == ["Intercept", "neural_prediction_r"]
