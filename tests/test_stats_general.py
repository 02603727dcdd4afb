"""Tests for neurobias.stats.general: summarise and compare_to_baseline (Welch and paired tests,
direction, multiple-comparison adjustment), significance marks and the tests' description. The
``stats`` job's tests table: tests/test_stats.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from statsmodels.stats.multitest import multipletests

from neurobias.stats import (
    METRIC_BETTER,
    adjust_p,
    compare_to_baseline,
    describe_tests,
    significance_mark,
    summarise,
    welch_df,
)

LEVELS = (0.0, 0.1)
SEEDS = (0, 1, 2, 3, 4)

# Hand-built values: 3 arms x 2 levels x 5 seeds.
# level 0.0: neural_model clearly better (p < 0.001), shuffle clearly worse.
# level 0.1: neural_model mildly better (0.001 < p < 0.05), shuffle ~ equal.
VALUES = {
    ("none", 0.0): [0.80, 0.82, 0.81, 0.79, 0.83],
    ("neural_model", 0.0): [0.90, 0.91, 0.92, 0.89, 0.905],
    ("shuffle", 0.0): [0.70, 0.72, 0.69, 0.73, 0.71],
    ("none", 0.1): [0.50, 0.55, 0.48, 0.52, 0.51],
    ("neural_model", 0.1): [0.55, 0.58, 0.52, 0.57, 0.53],
    ("shuffle", 0.1): [0.51, 0.49, 0.53, 0.50, 0.52],
}


def tidy(values=VALUES, study="demo") -> pd.DataFrame:
    rows = []
    for (arm, level), vals in values.items():
        for seed, v in zip(SEEDS, vals):
            rows.append(
                dict(
                    study=study,
                    arm=arm,
                    seed=seed,
                    evaluation="gaussian_noise",
                    condition="gaussian_noise",
                    level=level,
                    metric="accuracy",
                    value=v,
                )
            )
    return pd.DataFrame(rows)


def hand_welch(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return t, df


# --------------------------------------------------------------------------- #
# summarise
# --------------------------------------------------------------------------- #
def test_summarise_matches_numpy():
    out = summarise(tidy())
    assert list(out.columns) == [
        "study", "evaluation", "condition", "level", "metric", "arm",
        "mean", "sem", "sd", "n",
    ]
    assert len(out) == len(VALUES)
    for (arm, level), vals in VALUES.items():
        row = out[(out["arm"] == arm) & (out["level"] == level)]
        assert len(row) == 1
        row = row.iloc[0]
        v = np.asarray(vals)
        assert row["n"] == v.size
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(v.std(ddof=1), rel=1e-12)
        assert row["sem"] == pytest.approx(v.std(ddof=1) / np.sqrt(v.size), rel=1e-12)
        assert row["sem"] == pytest.approx(sps.sem(v), rel=1e-12)


def test_summarise_custom_by_and_single_value():
    df = tidy()
    out = summarise(df, by=("arm",))
    assert list(out.columns) == ["arm", "mean", "sem", "sd", "n"]
    none = out.set_index("arm").loc["none"]
    v = np.asarray(VALUES[("none", 0.0)] + VALUES[("none", 0.1)])
    assert none["n"] == 10
    assert none["mean"] == pytest.approx(v.mean())
    one = summarise(df[df["seed"] == 0])
    assert (one["n"] == 1).all()
    assert one["sem"].isna().all() and one["sd"].isna().all()


def test_summarise_does_not_mutate_and_missing_column():
    df = tidy()
    before = df.copy()
    summarise(df)
    pd.testing.assert_frame_equal(df, before)
    with pytest.raises(ValueError, match="value"):
        summarise(df.drop(columns="value"))


# --------------------------------------------------------------------------- #
# compare_to_baseline
# --------------------------------------------------------------------------- #
def test_compare_matches_scipy_and_hand_welch():
    df = tidy()
    out = compare_to_baseline(df)
    assert list(out.columns) == [
        "study", "evaluation", "condition", "level", "metric",
        "arm", "baseline", "mean", "sem", "n",
        "baseline_mean", "baseline_sem", "baseline_n",
        "difference", "test", "n_pairs", "t", "df", "better", "alternative",
        "p", "correction", "p_adjusted", "significance",
    ]
    # the library default is today's unpaired, unadjusted test
    assert set(out["test"]) == {"welch"} and set(out["correction"]) == {"none"}
    assert out["n_pairs"].isna().all()
    assert np.array_equal(out["p_adjusted"].to_numpy(), out["p"].to_numpy())
    assert len(out) == 4  # 2 non-baseline arms x 2 levels
    assert set(out["baseline"]) == {"none"}
    for level in LEVELS:
        base = np.asarray(VALUES[("none", level)])
        for arm in ("neural_model", "shuffle"):
            a = np.asarray(VALUES[(arm, level)])
            row = out[(out["arm"] == arm) & (out["level"] == level)].iloc[0]
            ref = sps.ttest_ind(a, base, equal_var=False, alternative="greater")
            t_hand, df_hand = hand_welch(a, base)
            assert row["t"] == pytest.approx(ref.statistic, rel=1e-10)
            assert row["t"] == pytest.approx(t_hand, rel=1e-10)
            assert row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
            # one-tailed p from the hand-computed t and df
            assert row["p"] == pytest.approx(sps.t.sf(t_hand, df_hand), rel=1e-8)
            assert row["df"] == pytest.approx(df_hand, rel=1e-10)
            assert row["n"] == 5 and row["baseline_n"] == 5
            assert row["mean"] == pytest.approx(a.mean())
            assert row["baseline_mean"] == pytest.approx(base.mean())
            assert row["sem"] == pytest.approx(sps.sem(a))
            assert row["baseline_sem"] == pytest.approx(sps.sem(base))
            assert row["difference"] == pytest.approx(a.mean() - base.mean())


def test_significance_marks_on_known_data():
    out = compare_to_baseline(tidy()).set_index(["arm", "level"])
    # neural_model at 0.0: huge effect -> p < 0.001
    assert out.loc[("neural_model", 0.0), "p"] < 0.001
    assert out.loc[("neural_model", 0.0), "significance"] == "**"
    # neural_model at 0.1: moderate effect -> 0.001 <= p < 0.05
    p = out.loc[("neural_model", 0.1), "p"]
    assert 0.001 <= p < 0.05
    assert out.loc[("neural_model", 0.1), "significance"] == "*"
    # shuffle at 0.1: no effect
    assert out.loc[("shuffle", 0.1), "p"] >= 0.05
    assert out.loc[("shuffle", 0.1), "significance"] == ""


def test_significance_mark_thresholds():
    assert significance_mark(0.0009) == "**"
    assert significance_mark(0.001) == "*"
    assert significance_mark(0.049) == "*"
    assert significance_mark(0.05) == ""
    assert significance_mark(0.9) == ""
    assert significance_mark(float("nan")) == ""


def test_significance_marks_thresholds():
    assert [significance_mark(p) for p in (0.0005, 0.001, 0.01, 0.049, 0.05, 0.5, float("nan"))] == \
        ["**", "*", "*", "*", "", "", ""]


def test_one_tailed_direction():
    out = compare_to_baseline(tidy()).set_index(["arm", "level"])
    worse = out.loc[("shuffle", 0.0)]
    assert worse["difference"] < 0
    assert worse["t"] < 0
    assert worse["p"] > 0.5
    assert worse["significance"] == ""
    # "less" flips it
    less = compare_to_baseline(tidy(), alternative="less").set_index(["arm", "level"])
    assert less.loc[("shuffle", 0.0), "p"] == pytest.approx(1 - worse["p"])
    assert less.loc[("shuffle", 0.0), "significance"] == "**"


def test_missing_baseline_raises_with_name():
    df = tidy()
    with pytest.raises(ValueError, match="'none'"):
        compare_to_baseline(df[df["arm"] != "none"])
    with pytest.raises(ValueError, match="'vgg'"):
        compare_to_baseline(df, baseline="vgg")


def test_baseline_missing_in_one_group_raises():
    df = tidy()
    df = df[~((df["arm"] == "none") & (df["level"] == 0.1))]
    with pytest.raises(ValueError, match="'none'"):
        compare_to_baseline(df)


def test_small_n_gives_nan_not_exception():
    df = tidy()
    # neural_model at level 0.1 keeps one seed; the rest is untouched
    df = df[~((df["arm"] == "neural_model") & (df["level"] == 0.1) & (df["seed"] > 0))]
    out = compare_to_baseline(df).set_index(["arm", "level"])
    row = out.loc[("neural_model", 0.1)]
    assert row["n"] == 1
    assert math.isnan(row["t"]) and math.isnan(row["p"]) and math.isnan(row["df"])
    assert math.isnan(row["sem"])
    assert row["significance"] == ""
    assert row["mean"] == pytest.approx(VALUES[("neural_model", 0.1)][0])
    # other cells unaffected
    assert not math.isnan(out.loc[("neural_model", 0.0), "p"])
    # baseline with n=1
    df2 = tidy()
    df2 = df2[~((df2["arm"] == "none") & (df2["seed"] > 0))]
    out2 = compare_to_baseline(df2)
    assert out2["p"].isna().all() and out2["t"].isna().all()
    assert (out2["baseline_n"] == 1).all()


def test_duplicate_seed_rows_raise():
    df = tidy()
    with pytest.raises(ValueError, match="seed"):
        compare_to_baseline(pd.concat([df, df], ignore_index=True))


def test_concatenated_studies_are_separate_groups():
    df = pd.concat([tidy(study="a"), tidy(study="b")], ignore_index=True)
    out = compare_to_baseline(df)
    assert len(out) == 8
    a = out[out["study"] == "a"].drop(columns="study").reset_index(drop=True)
    b = out[out["study"] == "b"].drop(columns="study").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_welch_df_helper():
    a = np.asarray(VALUES[("neural_model", 0.1)])
    b = np.asarray(VALUES[("none", 0.1)])
    _, df_hand = hand_welch(a, b)
    assert welch_df(a.var(ddof=1), a.size, b.var(ddof=1), b.size) == pytest.approx(df_hand)
    assert math.isnan(welch_df(1.0, 1, 1.0, 5))


# --------------------------------------------------------------------------- #
# paired test
# --------------------------------------------------------------------------- #
def _by_seed(df, arm, level, metric="accuracy"):
    cell = df[(df["arm"] == arm) & (df["level"] == level) & (df["metric"] == metric)]
    return cell.set_index("seed")["value"]


def test_paired_matches_ttest_rel_matched_by_seed_not_by_row_order():
    df = tidy()
    # rows in random order, so each arm's seeds come in a different order
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    out = compare_to_baseline(shuffled, test="paired")
    assert set(out["test"]) == {"paired"}
    row_order_differs = []
    for level in LEVELS:
        base = _by_seed(df, "none", level).sort_index()
        for arm in ("neural_model", "shuffle"):
            a = _by_seed(df, arm, level).sort_index()
            ref = sps.ttest_rel(a.to_numpy(), base.to_numpy(), alternative="greater")
            row = out[(out["arm"] == arm) & (out["level"] == level)].iloc[0]
            assert row["t"] == pytest.approx(ref.statistic, rel=1e-10)
            assert row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
            assert row["df"] == 4 and row["n_pairs"] == 5
            assert row["difference"] == pytest.approx((a - base).mean())
            # pairing by the shuffled row order would give another answer: the matching matters
            a_rows = shuffled[(shuffled["arm"] == arm) & (shuffled["level"] == level)]["value"].to_numpy()
            b_rows = shuffled[(shuffled["arm"] == "none") & (shuffled["level"] == level)]["value"].to_numpy()
            row_order_differs.append(
                sps.ttest_rel(a_rows, b_rows, alternative="greater").pvalue != pytest.approx(row["p"]))
    assert sum(row_order_differs) >= 3  # (one cell's variance of differences agrees by chance)


def test_paired_differs_from_welch_on_correlated_seeds():
    # each seed shifts every arm alike: huge between-seed spread, tiny constant gain
    offsets = (0.0, 0.2, -0.15, 0.1, -0.05)
    values = {("none", 0.0): [0.5 + o for o in offsets],
              ("neural_model", 0.0): [0.52 + o + 0.001 * i for i, o in enumerate(offsets)]}
    out_p = compare_to_baseline(tidy(values), test="paired").iloc[0]
    out_w = compare_to_baseline(tidy(values), test="welch").iloc[0]
    assert out_p["p"] < 1e-4 < 0.3 < out_w["p"]


def test_paired_drops_seeds_missing_on_one_side_and_reports_n():
    df = tidy()
    df = df[~((df["arm"] == "neural_model") & (df["seed"] == 4))]
    df = df[~((df["arm"] == "none") & (df["seed"] == 0))]
    df.loc[(df["arm"] == "shuffle") & (df["seed"] == 2) & (df["level"] == 0.0), "value"] = np.nan
    out = compare_to_baseline(df, test="paired").set_index(["arm", "level"])
    row = out.loc[("neural_model", 0.0)]
    assert (row["n"], row["baseline_n"], row["n_pairs"]) == (4, 4, 3)
    common = [1, 2, 3]
    a = np.asarray(VALUES[("neural_model", 0.0)])[common]
    b = np.asarray(VALUES[("none", 0.0)])[common]
    assert row["p"] == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10)
    assert row["mean"] == pytest.approx(np.mean(VALUES[("neural_model", 0.0)][:4]))  # all its seeds
    nan_row = out.loc[("shuffle", 0.0)]  # NaN at seed 2 dropped as well
    assert nan_row["n_pairs"] == 3 and nan_row["n"] == 4
    c = np.asarray(VALUES[("shuffle", 0.0)])[[1, 3, 4]]
    d = np.asarray(VALUES[("none", 0.0)])[[1, 3, 4]]
    assert nan_row["p"] == pytest.approx(sps.ttest_rel(c, d, alternative="greater").pvalue, rel=1e-10)


def test_paired_with_fewer_than_two_pairs_is_nan_and_left_out_of_the_family():
    df = tidy()
    # neural_model at 0.1 shares only seed 0 with the baseline
    df = df[~((df["arm"] == "neural_model") & (df["level"] == 0.1) & (df["seed"] > 0))]
    out = compare_to_baseline(df, test="paired", correction="holm")
    bad = out[(out["arm"] == "neural_model") & (out["level"] == 0.1)].iloc[0]
    assert bad["n_pairs"] == 1 and math.isnan(bad["p"]) and math.isnan(bad["p_adjusted"])
    assert bad["significance"] == ""
    ok = out[out["p"].notna()]
    assert len(ok) == 3
    np.testing.assert_allclose(ok["p_adjusted"], multipletests(ok["p"], method="holm")[1], rtol=1e-12)


def test_paired_needs_a_seed_column():
    with pytest.raises(ValueError, match="seed"):
        compare_to_baseline(tidy().drop(columns="seed"), test="paired")
    # Welch does not
    assert len(compare_to_baseline(tidy().drop(columns="seed"), test="welch")) == 4


# --------------------------------------------------------------------------- #
# multiple comparisons
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("correction, method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjusted_p_equals_multipletests_over_every_level_and_arm(correction, method):
    out = compare_to_baseline(tidy(), test="paired", correction=correction)
    assert set(out["correction"]) == {correction}
    # one family: both arms x both levels against the one baseline
    expected = multipletests(out["p"].to_numpy(), method=method)[1]
    np.testing.assert_allclose(out["p_adjusted"], expected, rtol=1e-12)
    assert (out["p_adjusted"] >= out["p"] - 1e-15).all()
    # not per level: a per-level family would give other values
    per_level = np.concatenate([multipletests(g["p"].to_numpy(), method=method)[1]
                                for _, g in out.groupby("level", sort=False)])
    assert not np.allclose(per_level, expected)


def test_marks_use_the_adjusted_p():
    out = compare_to_baseline(tidy(), test="welch", correction="holm").set_index(["arm", "level"])
    row = out.loc[("neural_model", 0.1)]
    # raw p would earn a star; the Holm-adjusted p (x3 here: the 2nd smallest of 4) does not
    assert row["p"] < 0.05 <= row["p_adjusted"]
    assert row["significance"] == ""
    assert out.loc[("neural_model", 0.0), "significance"] == "**"
    for (_, _), r in out.iterrows():
        assert r["significance"] == significance_mark(r["p_adjusted"])


def test_adjust_p_keeps_nan_and_none_is_identity():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    holm = adjust_p(p, "holm")
    assert math.isnan(holm[1])
    np.testing.assert_allclose(holm[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])
    np.testing.assert_allclose(holm[[0, 2, 3]], [0.03, 0.06, 0.06])
    np.testing.assert_array_equal(adjust_p(p, "none"), p)
    with pytest.raises(ValueError, match="correction"):
        adjust_p(p, "bonferroni")


def test_invalid_test_or_correction_raise():
    with pytest.raises(ValueError, match="test"):
        compare_to_baseline(tidy(), test="mannwhitney")
    with pytest.raises(ValueError, match="correction"):
        compare_to_baseline(tidy(), correction="sidak")


# --------------------------------------------------------------------------- #
# direction
# --------------------------------------------------------------------------- #
def test_direction_columns_and_a_lower_is_better_metric():
    acc = tidy()
    rate = tidy().assign(metric="success_rate_l2")  # same numbers, but lower is better
    df = pd.concat([acc, rate], ignore_index=True)
    out = compare_to_baseline(df, test="paired", better=METRIC_BETTER)
    a = out[out["metric"] == "accuracy"]
    r = out[out["metric"] == "success_rate_l2"]
    assert set(a["better"]) == {"higher"} and set(a["alternative"]) == {"greater"}
    assert set(r["better"]) == {"lower"} and set(r["alternative"]) == {"less"}
    for level in LEVELS:
        base = _by_seed(rate, "none", level, "success_rate_l2").sort_index().to_numpy()
        x = _by_seed(rate, "shuffle", level, "success_rate_l2").sort_index().to_numpy()
        row = r[(r["arm"] == "shuffle") & (r["level"] == level)].iloc[0]
        assert row["p"] == pytest.approx(sps.ttest_rel(x, base, alternative="less").pvalue, rel=1e-10)
    # shuffle at 0.0 is far below the baseline: worse accuracy, better (lower) success rate
    assert a.set_index(["arm", "level"]).loc[("shuffle", 0.0), "p"] > 0.99
    assert r.set_index(["arm", "level"]).loc[("shuffle", 0.0), "p"] < 0.001


def test_explicit_alternative_overrides_the_direction_but_better_stays():
    out = compare_to_baseline(tidy(), better="higher", alternative="two-sided", test="paired")
    assert set(out["alternative"]) == {"two-sided"} and set(out["better"]) == {"higher"}
    row = out[(out["arm"] == "shuffle") & (out["level"] == 0.0)].iloc[0]
    a = np.asarray(VALUES[("shuffle", 0.0)])
    b = np.asarray(VALUES[("none", 0.0)])
    assert row["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-10)
    lower = compare_to_baseline(tidy(), better="lower", test="paired")
    assert set(lower["alternative"]) == {"less"} and set(lower["better"]) == {"lower"}
    row = lower[(lower["arm"] == "shuffle") & (lower["level"] == 0.0)].iloc[0]
    assert row["p"] == pytest.approx(sps.ttest_rel(a, b, alternative="less").pvalue, rel=1e-10)
    assert row["significance"] == "**"  # shuffle is far lower at 0.0


def test_a_metric_without_a_direction_is_refused():
    df = tidy().assign(metric="entropy")
    with pytest.raises(ValueError, match="entropy"):
        compare_to_baseline(df, better=METRIC_BETTER)
    with pytest.raises(ValueError, match="metric"):
        compare_to_baseline(tidy(), by=("study", "level"), better=METRIC_BETTER)
    with pytest.raises(ValueError, match="higher"):
        compare_to_baseline(tidy(), better="bigger")


def test_describe_tests_words_the_table():
    out = compare_to_baseline(tidy(), test="paired", correction="holm", better=METRIC_BETTER)
    text = describe_tests(out)
    assert text == ("one-tailed paired t-test over seeds vs baseline (better: higher accuracy), "
                    "p Holm-adjusted within the 4 comparisons with the same baseline")
    welch = describe_tests(compare_to_baseline(tidy()), "r = 0")
    assert "Welch" in welch and "vs r = 0" in welch and "not adjusted" in welch
