"""The ``stats`` job (neurobias.jobs.stats): its tests table, one family of adjusted p-values per
baseline, bookkeeping metrics left out (hand-built values from tests/test_stats_general.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from test_stats_general import VALUES, tidy


def test_stats_job_adjusts_each_baseline_as_its_own_family(tmp_path):
    from neurobias.jobs import stats as stats_job
    df = tidy()
    extra = df[df["level"] == 0.0].assign(metric="n_images", value=100.0)
    paths = []
    for arm, frame in pd.concat([df, extra]).groupby("arm"):
        paths.append(tmp_path / f"{arm}.csv")
        frame.to_csv(paths[-1], index=False)
    stats_job(tables=paths, summary=tmp_path / "out" / "summary.csv", tests=tmp_path / "out" / "tests.csv",
              baseline="none", controls=["shuffle"], statistics={"test": "paired", "correction": "holm"})
    tests = pd.read_csv(tmp_path / "out" / "tests.csv")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert "n_images" in set(summary["metric"]) and "n_images" not in set(tests["metric"])
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    assert set(tests["better"]) == {"higher"} and set(tests["alternative"]) == {"greater"}
    assert tests.groupby("baseline").size().to_dict() == {"none": 4, "shuffle": 4}
    for baseline, family in tests.groupby("baseline"):
        np.testing.assert_allclose(family["p_adjusted"], multipletests(family["p"], method="holm")[1],
                                   rtol=1e-10)
    # one family over the whole table would give other adjusted values
    assert not np.allclose(tests["p_adjusted"], multipletests(tests["p"], method="holm")[1])
    row = tests[(tests["baseline"] == "shuffle") & (tests["arm"] == "neural_model") & (tests["level"] == 0.0)].iloc[0]
    a = np.asarray(VALUES[("neural_model", 0.0)])
    b = np.asarray(VALUES[("shuffle", 0.0)])
    assert row["p"] == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10)
