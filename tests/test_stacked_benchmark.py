"""benchmarks/stacked_training.py, which a session with a GPU runs as it is: a tiny CPU run must
time both engines on the same runs and write the table it promises."""

from __future__ import annotations

import math
import re
import pandas as pd
import pytest

from conftest import run_benchmark


def test_stacked_training_benchmark_times_both_engines_on_the_same_runs(tmp_path):
    out = tmp_path / "stacked.csv"
    run = run_benchmark("stacked_training.py", "--device", "cpu", "--nets", "demo", "--models", "2", "--epochs", "1",
                        "--images", "128", "--batch-size", "32", "--threads", "1", "--out", out)
    df = pd.read_csv(out)
    assert sorted(df.side) == ["sequential", "stacked"] and (df.net == "demo").all()
    assert (df.benchmark == "stacked_training").all() and (df.device == "cpu").all()
    assert (df.architecture == "resnet18").all() and (df.width == 8).all()
    assert (df.arm == "similarity").all() and (df.alpha == 10).all() and (df.error.isna()).all()
    assert (df.models == 2).all() and (df.epochs == 1).all() and (df.images == 128).all()
    assert (df.seconds > 0).all()
    for _, row in df.iterrows():  # models per hour from the (rounded) seconds
        assert row.models_per_hour == pytest.approx(3600 * row.models / row.seconds, rel=1e-3)
    side = df.set_index("side")
    ratio = side.loc["sequential", "seconds"] / side.loc["stacked", "seconds"]
    assert side.loc["stacked", "ratio"] == side.loc["sequential", "ratio"] == pytest.approx(ratio, rel=1e-3)
    assert side.loc["stacked", "ratio"] == pytest.approx(
        side.loc["stacked", "models_per_hour"] / side.loc["sequential", "models_per_hour"], rel=1e-3)
    # on a CPU nothing of the GPU is measured
    assert df.gpu_util_mean.isna().all() and df.peak_memory_mib.isna().all()
    # both sides trained the same runs: the same first epoch up to the kernels' rounding, amplified
    # over four steps by training (a change of memory format gives as much)
    difference = df.first_epoch_train_loss_max_diff
    assert (difference == difference.iloc[0]).all() and 0 <= difference.iloc[0] < 0.5
    assert "GPU utilisation and memory are not measured" in run.stdout
    line = re.search(r"demo \(resnet18 width 8\), 2 models: sequential ([0-9.]+) s \(([0-9]+) models/h\), "
                     r"stacked ([0-9.]+) s \(([0-9]+) models/h\), ratio stacked/sequential ([0-9.]+)x", run.stdout)
    assert line, run.stdout
    assert float(line.group(5)) == pytest.approx(ratio, abs=0.01)
    assert math.isclose(float(line.group(1)), side.loc["sequential", "seconds"], abs_tol=0.05)
    assert math.isclose(float(line.group(3)), side.loc["stacked", "seconds"], abs_tol=0.05)
    # one job per model: the sequential side plus one measured start-up per model
    start_up = side.loc["stacked", "job_start_up_seconds"]
    assert (df.job_start_up_seconds == start_up).all() and 0.5 < start_up < 60  # a fresh interpreter importing torch
    assert side.loc["stacked", "one_job_per_model_seconds"] == pytest.approx(
        side.loc["sequential", "seconds"] + 2 * start_up, abs=0.01)
    assert side.loc["stacked", "ratio_vs_one_job_per_model"] == pytest.approx(
        side.loc["stacked", "one_job_per_model_seconds"] / side.loc["stacked", "seconds"], rel=1e-3)
    assert re.search(r"ratio vs one job per model [0-9.]+x \(at least: 2 start-ups of [0-9.]+ s", run.stdout)
    assert re.search(r"a one-model job's start-up \(Python, torch, the package, the cpu context\): [0-9.]+ s",
                     run.stdout)
