"""The study's ``statistics`` settings through the snakemake CLI: the tiny run's tests table is a
paired, Holm-adjusted one-tailed test by default, and changing the settings reruns exactly the
statistics and the figure that reads them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from conftest import TINY, dry_run_counts


@pytest.mark.slow
def test_tiny_tests_table_is_paired_and_holm_adjusted_per_baseline(tiny_local_run):
    tests = pd.read_csv(tiny_local_run / "results/stats/tiny/gaussian_noise_tests.csv")
    cfg = yaml.safe_load(TINY.read_text())["studies"]["tiny"]
    tidy = pd.concat([pd.read_csv(tiny_local_run / f"results/eval/tiny/gaussian_noise/{arm}.csv")
                      for arm in cfg["arms"]], ignore_index=True)
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    assert set(tests["better"]) == {"higher"} and set(tests["alternative"]) == {"greater"}
    assert set(tests["baseline"]) == {"none", "shuffle"}
    for _, family in tests.groupby("baseline"):
        finite = family[family["p"].notna()]
        np.testing.assert_allclose(finite["p_adjusted"], multipletests(finite["p"], method="holm")[1], rtol=1e-10)
    row = tests[(tests["baseline"] == "none") & (tests["arm"] == "neural_model")].iloc[-1]
    cell = tidy[tidy["level"] == row["level"]]
    a = cell[cell["arm"] == "neural_model"].set_index("seed")["value"].sort_index()
    b = cell[cell["arm"] == "none"].set_index("seed")["value"].sort_index()
    assert row["n_pairs"] == len(cfg["seeds"])
    expected = sps.ttest_rel(a.to_numpy(), b.loc[a.index].to_numpy(), alternative="greater").pvalue
    assert row["p"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("key, value", [("test", "welch"), ("correction", "bh")])
def test_a_statistics_change_reruns_only_the_statistics_and_the_figure(tiny_local_run, tmp_path, key, value):
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"].setdefault("statistics", {})[key] = value
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    counts = {rule: int(n) for rule, n in dry_run_counts(tiny_local_run, changed).items()
              if rule not in ("all", "total")}
    assert counts == {"stats": 1, "figure_noise_robustness": 1}
