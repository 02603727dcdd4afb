"""Tests for neurobias.stats.federer2020: learning-curve records and the final-epoch tests against
scipy (hand-made histories from tests/test_federer.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from neurobias.stats import LEARNING_CURVE_BETTER, final_epoch_tests, learning_curve_records, significance_mark
from test_federer import EPOCHS, JIT, SEEDS5, _tidy, history


def test_learning_curve_records_rows():
    h = history(0.5, 0.1, 0)
    rec = learning_curve_records(h, study="fed", arm="v1", seed=2, label_noise=0.5, r=0.1)
    # within_superclass_error is not in the history: skipped; train_loss is not a curve metric
    assert sorted(rec["metric"].unique()) == ["generalisation_error", "test_accuracy"]
    assert len(rec) == 2 * len(EPOCHS)
    assert set(rec["level"]) == {0.5} and set(rec["r"]) == {0.1} and set(rec["seed"]) == {2}
    assert set(rec["condition"]) == {"label_noise"} and set(rec["evaluation"]) == {"learning_curves"}
    acc = rec[rec["metric"] == "test_accuracy"].sort_values("epoch")
    np.testing.assert_allclose(acc["value"], h["test_accuracy"])
    assert list(acc["epoch"]) == list(EPOCHS)


def test_final_epoch_tests_are_paired_holm_adjusted_and_directed():
    tidy = _tidy().sample(frac=1.0, random_state=3)  # row order must not matter
    tests = final_epoch_tests(tidy, baseline="no_neural")
    last = max(EPOCHS)
    assert set(tests["epoch"]) == {last}  # no per-epoch p-values
    assert len(tests) == 2 * 2  # levels x metrics, one non-baseline arm
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    for _, row in tests.iterrows():
        cell = tidy[(tidy["level"] == row["level"]) & (tidy["epoch"] == last) & (tidy["metric"] == row["metric"])]
        a = cell[cell["arm"] == "v1"].sort_values("seed")["value"].to_numpy()
        b = cell[cell["arm"] == "no_neural"].sort_values("seed")["value"].to_numpy()
        assert row["better"] == "higher" and row["alternative"] == "greater"
        assert row["p"] == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10, abs=1e-300)
        assert row["n_pairs"] == 5
        assert row["difference"] == pytest.approx((a - b).mean())
    # one family: both levels and both metrics against the baseline
    np.testing.assert_allclose(tests["p_adjusted"], multipletests(tests["p"], method="holm")[1], rtol=1e-10)
    for _, row in tests.iterrows():
        assert row["significance"] == significance_mark(row["p_adjusted"])
    big = tests[(tests["level"] == 0.5) & (tests["metric"] == "test_accuracy")].iloc[0]
    assert big["p_adjusted"] < 0.001 and big["significance"] == "**"
    welch = final_epoch_tests(tidy, baseline="no_neural", test="welch", correction="bh")
    assert set(welch["test"]) == {"welch"} and set(welch["correction"]) == {"bh"}
    np.testing.assert_allclose(welch["p_adjusted"], multipletests(welch["p"], method="fdr_bh")[1], rtol=1e-10)


def test_generalisation_error_higher_is_better():
    """train - test loss: memorising drives it down, so a higher value is the better network."""
    assert LEARNING_CURVE_BETTER == {"test_accuracy": "higher", "generalisation_error": "higher",
                                     "within_superclass_error": "higher"}
    frames = []
    for arm, gap in (("no_neural", -0.5), ("v1", -0.1), ("overfits", -0.9)):  # v1 overfits least
        for seed in SEEDS5:
            h = pd.DataFrame({"epoch": [1, 2], "test_accuracy": [0.5, 0.5 + 0.01 * seed],
                              "generalisation_error": [0.0, gap + JIT[seed] + 0.01 * (arm == "v1") * seed]})
            frames.append(learning_curve_records(h, study="fed", arm=arm, seed=seed))
    tests = final_epoch_tests(pd.concat(frames), baseline="no_neural").set_index(["arm", "metric"])
    assert tests.loc[("v1", "generalisation_error"), "alternative"] == "greater"
    assert tests.loc[("v1", "generalisation_error"), "significance"] == "**"
    assert tests.loc[("overfits", "generalisation_error"), "p"] > 0.99
    assert tests.loc[("overfits", "generalisation_error"), "significance"] == ""
