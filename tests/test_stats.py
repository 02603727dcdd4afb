"""Tests for neurobias.stats: summarise and compare_to_baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from neurobias.stats import compare_to_baseline, significance_mark, summarise, welch_df

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
        "difference", "t", "df", "p", "significance",
    ]
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
