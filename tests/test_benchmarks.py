"""The benchmark scripts that a session with a GPU runs as they are: a small CPU run of each must
produce the table it promises."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from conftest import ROOT, TINY, run_benchmark


def test_tin_tc_timing_times_every_condition_and_the_whole_evaluation(tmp_path):
    out = tmp_path / "tin_tc.csv"
    run = run_benchmark("tin_tc_timing.py", "--device", "cpu", "--images", "24", "--batch-size", "16",
                        "--corruptions", "contrast", "fog", "--severities", "2", "5", "--threads", "1", "--out", out)
    df = pd.read_csv(out)
    generate = df[df.phase == "generate"]
    assert sorted(zip(generate.corruption, generate.severity.astype(int))) == [
        ("contrast", 2), ("contrast", 5), ("fog", 2), ("fog", 5)]
    assert (generate.images == 24).all()
    evaluate = df[df.phase == "evaluate"]
    assert len(evaluate) == 1 and int(evaluate.images.iloc[0]) == 24 * 5  # clean + 2 x 2 conditions
    assert (df.seconds > 0).all() and (df.device == "cpu").all()
    assert "TOTAL (generation + evaluation of one VGG-19, 5 conditions x 24 images)" in run.stdout


def test_corruption_speed_times_ours_the_torch_form_and_the_reference_side_by_side(tmp_path):
    out = tmp_path / "speed.csv"
    run = run_benchmark("corruption_speed.py", "--images", "8", "--corruptions", "contrast", "motion_blur",
                        "--severities", "1", "4", "--repeats", "1", "--out", out)
    df = pd.read_csv(out)
    per_condition = df[df.severity != "all"]
    assert sorted(set(zip(per_condition.corruption, per_condition.severity.astype(int)))) == [
        ("contrast", 1), ("contrast", 4), ("motion_blur", 1), ("motion_blur", 4)]
    implementations = per_condition.groupby(["corruption", "severity"]).implementation.apply(lambda s: tuple(sorted(s)))
    assert set(implementations) == {("ours", "reference", "torch_form")}
    overall = df[(df.corruption == "all") & (df.severity == "all")].set_index("implementation")
    assert overall.loc["ours", "ratio"] == pytest.approx(overall.loc["reference", "seconds"] / overall.loc["ours", "seconds"])
    assert "the kernels make ours" in run.stdout and "OVERALL: ours" in run.stdout


def test_evaluation_batch_times_both_batches_and_compares_the_logits(tmp_path):
    out = tmp_path / "evaluation_batch.csv"
    run = run_benchmark("evaluation_batch.py", "--networks", "resnet18_w8", "vgg11_bn_w8", "--images", "24",
                        "--batch", "8", "--rounds", "1", "--out", out)
    df = pd.read_csv(out)
    assert sorted(df.network) == ["resnet18_w8", "vgg11_bn_w8"] and (df.images == 24).all() and (df.batch == 8).all()
    assert df.same_logits.all()  # a deterministic network's logits do not depend on the batch
    assert df.speedup.tolist() == pytest.approx((df.seconds_batch_512 / df.seconds).tolist())
    assert "8 images per pass against 512" in run.stdout


def test_packing_probe_times_the_same_computation_both_ways():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from packing_probe import probe
    r = probe(2, "cpu", repeats=1, batch=8, size=16)
    assert r["models"] == 2 and r["sequential"] > 0 and r["stacked"] > 0
    assert r["max_loss_difference"] < 1e-4  # the stacked models are the separate ones


@pytest.mark.slow
def test_packed_training_benchmark_times_both_sides_and_compares_their_models(tmp_path):
    out = tmp_path / "packed.csv"
    run = run_benchmark("packed_training.py", "--configfile", TINY, "--study", "tiny", "--seeds", "1", "--pack", "2",
                        "--out", out, timeout=900)
    df = pd.read_csv(out).set_index("pack")
    assert sorted(df.index) == [1, 2] and (df.models == 4).all() and (df.seconds > 0).all()
    assert df.identical_to_unpacked.all()  # the packed models are the unpacked ones, byte for byte
    import re
    printed = float(re.search(r"pack 2 / pack 1 \(median of 1\): ([0-9.]+)x", run.stdout).group(1))
    assert printed == pytest.approx(df.loc[2, "models_per_hour"] / df.loc[1, "models_per_hour"], abs=0.01)


def _brute_force_best_set(ready, threads, priority, free):
    """Every subset of the ready jobs: the scheduler's objective checked exhaustively."""
    import itertools
    fitting = (s for k in range(len(ready) + 1) for s in itertools.combinations(ready, k)
               if sum(threads[j] for j in s) <= free)
    return max((sum(priority[j] for j in s), sum(threads[j] for j in s)) for s in fitting)


def test_schedule_replay_picks_the_jobs_snakemakes_objective_picks():
    import random
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from schedule_replay import best_set
    # the 2-thread V1 fit (10000) beats two 1-core similarity jobs (1000 each) for two free cores
    threads, priority = {0: 2, 1: 1, 2: 1}, {0: 10000, 1: 1000, 2: 1000}
    assert best_set([1, 2, 0], threads, priority, 2) == (0,)
    assert set(best_set([1, 2, 0], threads, priority, 1)) == {1}  # one core: the fit does not fit
    rng = random.Random(0)
    for _ in range(200):
        n, free = rng.randint(1, 7), rng.randint(1, 4)
        threads = {j: rng.randint(1, 3) for j in range(n)}
        priority = {j: rng.choice([0, 1, 10, 100]) for j in range(n)}
        chosen = best_set(list(range(n)), threads, priority, free)
        assert sum(threads[j] for j in chosen) <= free
        key = (sum(priority[j] for j in chosen), sum(threads[j] for j in chosen))
        assert key == _brute_force_best_set(list(range(n)), threads, priority, free)


@pytest.mark.slow
def test_schedule_replay_replays_a_finished_run_both_ways(tiny_local_run, tmp_path):
    out = tmp_path / "replay.csv"
    run = run_benchmark("schedule_replay.py", "--run", tiny_local_run, "--configfile", TINY, "--orders", "3",
                        "--out", out)
    df = pd.read_csv(out)
    assert sorted(df.side.unique()) == ["no priorities", "stage priorities"] and len(df) == 6
    import re
    work = float(re.search(r"([0-9.]+) core-seconds of work", run.stdout).group(1))
    assert work > 0
    # no order beats the cores' share of the work; idle time is what the order leaves on the table
    assert (df.wall_seconds >= work / 2 - 0.01).all()
    # (the work is printed to 0.1 s, the CSV's seconds to 0.01 s: up to 0.05 + 2 x 0.005 + 0.005 apart)
    assert df.idle_core_seconds.to_numpy() == pytest.approx(2 * df.wall_seconds.to_numpy() - work, abs=0.066)


def _write_model(d, name, weights, val_accuracy):
    import torch
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": weights}, d / name)
    pd.DataFrame({"epoch": [1, 2], "val_accuracy": [0.1, val_accuracy]}).to_csv(
        (d / name).with_name("history.csv"), index=False)


def test_packed_training_benchmark_reports_how_far_apart_the_two_sides_models_are(tmp_path):
    """The stacked engine's models differ in their last bits, so the benchmark reports the largest
    weight difference and each side's final accuracy instead of only 'identical'."""
    import torch
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from packed_training import compare_models
    names = ["results/train/s/a/seed0/model.pt", "results/train/s/a/seed1/model.pt"]
    w = {"conv.weight": torch.arange(6.0).reshape(2, 3), "bn.num_batches_tracked": torch.tensor(5)}
    for d in ("one", "packed", "same"):
        for i, name in enumerate(names):
            _write_model(tmp_path / d, name, w, 0.5 + 0.1 * i)
    _write_model(tmp_path / "packed", names[1], {**w, "conv.weight": w["conv.weight"] + torch.tensor([[0, 0.25, 0], [0, 0, -0.5]])}, 0.8)
    differ = compare_models(tmp_path / "one", tmp_path / "packed", names)
    assert not differ["identical"] and differ["max_weight_difference"] == 0.5
    assert differ["val_accuracy"] == pytest.approx((0.55, 0.65))  # (0.5 + 0.6) / 2, (0.5 + 0.8) / 2
    same = compare_models(tmp_path / "one", tmp_path / "same", names)
    assert same["identical"] and same["max_weight_difference"] == 0.0


def test_packed_training_benchmark_baseline_side_is_always_the_one_model_loop():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from packed_training import side_config
    config = {"device": "cuda", "studies": {"demo": {"pack": "auto", "pack_engine": "stacked", "seeds": [0]}}}
    one, packed = side_config(config, "demo", 1, "stacked"), side_config(config, "demo", 10, "stacked")
    assert one["studies"]["demo"]["pack"] == 1 and one["studies"]["demo"]["pack_engine"] == "sequential"
    assert packed["studies"]["demo"]["pack"] == 10 and packed["studies"]["demo"]["pack_engine"] == "stacked"
    assert config["studies"]["demo"]["pack"] == "auto"  # the caller's config is left as it was
