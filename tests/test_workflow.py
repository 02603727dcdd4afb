"""End to end through the snakemake CLI on the tiny config, in a temporary directory.

Checks the content of every output (shapes, columns, ranges, row counts), that one figure is a
valid target on its own, and that a bad config fails before any job runs.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from neurobias.data import load_split
from neurobias.neural.recording import Recording

from conftest import TINY, assert_nothing_to_do, dry_run_counts, snakemake

CFG = yaml.safe_load(TINY.read_text())
STUDY = CFG["studies"]["tiny"]
ARMS, SEEDS = list(STUDY["arms"]), STUDY["seeds"]
LEVELS = STUDY["evaluations"]["gaussian_noise"]["levels"]




@pytest.fixture(scope="module")
def run_dir(tiny_local_run):
    return tiny_local_run


@pytest.mark.slow
def test_datasets(run_dir):
    n = CFG["datasets"]["tinyshapes"]
    for split in ("train", "val", "test"):
        images, labels, classes = load_split(run_dir / f"results/data/tinyshapes/{split}.pt")
        assert images.shape == (n[f"n_{split}"], 3, 32, 32) and images.dtype == torch.uint8
        assert len(classes) == 10 and set(labels.tolist()) == set(range(10))


@pytest.mark.slow
def test_recording_and_v1_model(run_dir):
    rec = Recording.load(run_dir / "results/neural/tinyv1/recording.npz")
    r = CFG["recordings"]["tinyv1"]
    assert rec.responses.shape == (r["n_images"], r["repeats"], r["population"]["n_neurons"])
    assert 0 < np.isnan(rec.responses).mean() < 0.1
    metrics = json.loads((run_dir / "results/v1model/tinyv1/metrics.json").read_text())
    assert -1 <= metrics["test_correlation"] <= 1 and np.isfinite(metrics["feve"])
    assert metrics["null_test_correlation"] == 0.0
    assert metrics["n_neurons"] == r["population"]["n_neurons"]


@pytest.mark.slow
def test_similarity_targets_and_diagnostics(run_dir):
    n = CFG["recordings"]["tinyv1"]["n_images"]
    mats = {k: np.load(run_dir / f"results/similarity/tiny/{k}.npy") for k in ("model", "data", "shuffle")}
    for k, s in mats.items():
        assert s.shape == (n, n), k
        np.testing.assert_allclose(s, s.T, atol=1e-6)
        np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-5)
        assert s.min() >= -1 and s.max() <= 1
    # shuffle is a permutation of the model matrix, not the matrix itself
    assert np.allclose(np.sort(mats["shuffle"].ravel()), np.sort(mats["model"].ravel()))
    assert not np.allclose(mats["shuffle"], mats["model"])
    diag = json.loads((run_dir / "results/similarity/tiny/diagnostics.json").read_text())
    assert diag["n_images"] == n and set(diag) >= {"model", "data", "shuffle", "data_split_half_reliability"}
    assert diag["data"]["heldout_r_with_data"] == pytest.approx(1.0)


@pytest.mark.slow
def test_training_outputs(run_dir):
    for arm in ARMS:
        for seed in SEEDS:
            d = run_dir / f"results/train/tiny/{arm}/seed{seed}"
            h = pd.read_csv(d / "history.csv")
            assert list(h["epoch"]) == list(range(1, STUDY["training"]["epochs"] + 1))
            assert h["val_accuracy"].between(0, 1).all()
            regularised = STUDY["arms"][arm]["regulariser"] != "none"
            assert (h["train_similarity_loss"] > 0).all() == regularised
            for layer in STUDY["arms"][arm].get("layers", []):
                assert h[f"gamma_{layer}"].between(0, 1).all()
            assert not (d / "checkpoint.pt").exists()
            prov = json.loads((d / "provenance.json").read_text())
            assert prov["seed"] == seed and prov["device"] == "cpu" and prov["config"]["arm"] == arm
            assert len(prov["config_hash"]) == 16 and prov["packages"]["torch"] != "not installed"


@pytest.mark.slow
def test_evaluation_stats_and_figure(run_dir):
    frames = [pd.read_csv(run_dir / f"results/eval/tiny/gaussian_noise/{a}.csv") for a in ARMS]
    for arm, f in zip(ARMS, frames):  # one table per arm: every seed, every level
        assert list(f.columns) == ["study", "arm", "seed", "evaluation", "condition", "level", "metric", "value"]
        assert (f["arm"] == arm).all() and f["seed"].tolist() == [s for s in SEEDS for _ in LEVELS]
        assert f["level"].tolist() == LEVELS * len(SEEDS) and f["value"].between(0, 1).all()
    tidy = pd.concat(frames)
    summary = pd.read_csv(run_dir / "results/stats/tiny/gaussian_noise_summary.csv")
    assert len(summary) == len(ARMS) * len(LEVELS) and (summary["n"] == len(SEEDS)).all()
    expected = tidy.groupby(["arm", "level"])["value"].mean()
    got = summary.set_index(["arm", "level"])["mean"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    tests = pd.read_csv(run_dir / "results/stats/tiny/gaussian_noise_tests.csv")
    for baseline in ["none", *STUDY["control_arms"]]:
        rows = tests[tests["baseline"] == baseline]
        assert len(rows) == (len(ARMS) - 1) * len(LEVELS)
        assert set(rows["arm"]) == set(ARMS) - {baseline}
        # the difference column is arm mean minus that baseline's mean, level by level
        means = summary.set_index(["arm", "level"])["mean"]
        for _, row in rows.iterrows():
            assert row["difference"] == pytest.approx(means[(row["arm"], row["level"])] - means[(baseline, row["level"])])
    finite = tests["p"].dropna()
    assert finite.between(0, 1).all()
    png = run_dir / "figures/tiny/noise_robustness.png"
    import matplotlib.image
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.std() > 0.01
    assert (run_dir / "figures/tiny/noise_robustness.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.slow
def test_nothing_left_to_do_and_single_targets(run_dir):
    assert_nothing_to_do(run_dir, TINY)
    # One figure builds only what it needs: no diagnostics, no other study's jobs.
    fresh = run_dir.parent / "single_target"
    r = snakemake(fresh, "-n", "figures/tiny/noise_robustness.pdf")
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "figure_noise_robustness" in out
    assert "similarity_diagnostics" not in out
    assert f"train                        {len(ARMS) * len(SEEDS)}" in out.replace("\t", " ") or \
        out.count("rule train:") == len(ARMS) * len(SEEDS)


def test_invalid_config_fails_before_any_job(tmp_path):
    bad = yaml.safe_load(TINY.read_text())
    bad["studies"]["tiny"]["training"]["epochs"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    r = snakemake(tmp_path / "work", config=path)
    assert r.returncode != 0
    assert "studies.tiny.training.epochs" in r.stdout + r.stderr
    assert not (tmp_path / "work" / "results").exists()


# A change of each kind of config value reruns exactly the jobs it affects ({rule: jobs}); moving a
# key or toggling progress bars reruns nothing.
RERUNS = [
    (("studies", "tiny", "training", "lr"), 0.07,
     {"train": 8, "evaluate_gaussian_noise": 4, "stats": 1, "figure_noise_robustness": 1}),
    (("studies", "tiny", "arms", "neural_model", "alpha"), 2,
     {"train": 2, "evaluate_gaussian_noise": 1, "stats": 1, "figure_noise_robustness": 1}),
    (("recordings", "tinyv1", "v1_model", "lr"), 0.002,
     {"fit_v1_model": 1, "similarity__from_network": 1, "similarity": 1, "similarity_diagnostics": 1, "train": 8, "evaluate_gaussian_noise": 4,
      "stats": 1, "figure_noise_robustness": 1}),
    (("studies", "tiny", "similarity", "shuffle_seed"), 3,
     {"similarity": 1, "similarity_diagnostics": 1, "train": 2, "evaluate_gaussian_noise": 1, "stats": 1,
      "figure_noise_robustness": 1}),
    (("studies", "tiny", "evaluations", "gaussian_noise", "levels"), [0.0, 0.2],
     {"evaluate_gaussian_noise": 4, "stats": 1, "figure_noise_robustness": 1}),
    (("studies", "tiny", "control_arms"), [], {"stats": 1, "figure_noise_robustness": 1}),
    (("studies", "tiny", "figure_note"), "another note", {"figure_noise_robustness": 1}),
    (("progress",), True, {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("path, value, expected", RERUNS, ids=[".".join(p[0]) for p in RERUNS])
def test_a_config_change_reruns_exactly_what_it_affects(tiny_local_run, tmp_path, path, value, expected):
    config = yaml.safe_load(TINY.read_text())
    section = config
    for key in path[:-1]:
        section = section.setdefault(key, {})
    section[path[-1]] = value
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))  # another key order than tiny.yaml's
    r = snakemake(tiny_local_run, "-n", config=changed, cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    if not expected:
        assert "Nothing to be done" in out, out[-3000:]
        return
    counts = {rule: int(n) for rule, n in dry_run_counts(tiny_local_run, changed).items()
              if rule not in ("all", "total")}
    assert counts == expected


@pytest.mark.slow
def test_kill_9_of_snakemake_then_unlock_resumes_to_the_same_model(tiny_local_run, tmp_path):
    """kill -9 of snakemake and its training job after the first epoch's checkpoint; `--unlock`,
    rerun: the model and history equal an uninterrupted run's, bit for bit (same machine, CPU)."""
    import os
    import signal
    import time

    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"]["training"]["epochs"] = 6
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump(config))
    target = "results/train/tiny/neural_model/seed1/model.pt"
    runs = {}
    for name in ("uninterrupted", "killed"):
        work = tmp_path / name
        shutil.copytree(tiny_local_run, work, ignore=shutil.ignore_patterns("locks"))
        runs[name] = work
    r = snakemake(runs["uninterrupted"], target, config=longer)
    assert r.returncode == 0, r.stderr[-3000:]

    work = runs["killed"]
    checkpoint = work / "results/train/tiny/neural_model/seed1/checkpoint.pt"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(TINY.parents[2] / "Snakefile"), "--directory", str(work),
           "--configfile", str(longer), "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=TINY.parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists() and proc.poll() is None, "the job ended or never wrote a checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job, as a lost session would
    proc.wait()
    assert not (work / target).exists()
    assert any((work / ".snakemake/locks").iterdir())  # the stale lock that --unlock clears
    assert snakemake(work, "--unlock", config=longer, cores=False).returncode == 0
    r = snakemake(work, target, config=longer)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (work / "logs/train/tiny/neural_model/seed1.log").read_text()
    assert "resuming from" in log
    want = torch.load(runs["uninterrupted"] / target, weights_only=True)["state_dict"]
    got = torch.load(work / target, weights_only=True)["state_dict"]
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    history = "results/train/tiny/neural_model/seed1/history.csv"
    assert (work / history).read_text() == (runs["uninterrupted"] / history).read_text()


def test_ready_jobs_start_in_stage_order(tmp_path):
    """Every job of the default run carries its stage's priority, earlier stages higher: Snakemake
    starts upstream jobs and training packs before the short evaluations and figures that fill the
    cores at the end (docs/performance.md)."""
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from schedule_replay import job_blocks
    r = snakemake(tmp_path, "-n", config=ROOT / "config.yaml", cores=False)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    jobs = job_blocks(r.stdout + r.stderr).values()
    stages = [lambda rule: rule in ("make_dataset", "make_recording", "fit_v1_model"),
              lambda rule: rule.startswith("similarity") or rule == "oracle_targets",
              lambda rule: rule.startswith("train"),
              lambda rule: rule.startswith("evaluate_") or rule == "brain_likeness",
              lambda rule: rule.startswith("stats") or rule == "brain_likeness_analysis",
              lambda rule: rule.startswith("figure_")]
    priorities = []
    for in_stage in stages:
        found = {job["priority"] for job in jobs if in_stage(job["rule"])}
        assert len(found) == 1, found  # one priority per stage
        priorities.append(found.pop())
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(stages)
    assert all(any(in_stage(job["rule"]) for in_stage in stages) for job in jobs if job["rule"] != "all")


@pytest.mark.parametrize("configfile", ["tiny.yaml", "safarani_tiny.yaml", "brain_tiny.yaml"])
def test_every_job_that_computes_on_the_device_asks_for_a_gpu(tmp_path, configfile):
    """On a cluster, a job that computes on the config's device gets ``resources.gpu_jobs`` (a GPU):
    with ``device: cuda`` and none it could only stop. Which jobs those are comes from the job
    functions (the ones taking a ``device``), except the similarity targets that are numpy
    computations of the responses (the targets not declared ``on_device``), which the workflow runs on
    the host."""
    import inspect
    import re
    from conftest import ROOT
    from neurobias.jobs import JOBS, job_name
    from neurobias.rule_params import target_kinds
    DEVICE_TARGETS, HOST_TARGETS = set(target_kinds(on_device=True)), set(target_kinds(on_device=False))
    config = yaml.safe_load((ROOT / "tests" / "configs" / configfile).read_text())
    config.update(device="cuda", resources={"gpu_jobs": {"gpu": 1}, "cpu_jobs": {"mem_mb": 500}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    r = snakemake(tmp_path / "work", "-n", config=tmp_path / "config.yaml")  # with --cores: each job's resources
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    blocks = re.findall(r"^(?:local)?rule (\S+):\n((?:    .*\n)+)", r.stdout + r.stderr, re.M)
    kinds_seen = set()
    for rule, body in blocks:
        if rule == "all":  # the target rule: no job function
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        asks_gpu = bool(re.search(r"\bgpu=[1-9]", fields.get("resources", "")))
        job = job_name(rule)
        computes_on_device = "device" in inspect.signature(JOBS[job]).parameters
        if job == "similarity":
            kind = Path(fields["output"].strip()).stem
            kinds_seen.add(kind)
            assert kind in DEVICE_TARGETS | HOST_TARGETS
            computes_on_device = kind in DEVICE_TARGETS
        assert asks_gpu == computes_on_device, (rule, fields.get("output"), fields.get("resources"))
    assert kinds_seen & DEVICE_TARGETS and kinds_seen & HOST_TARGETS  # both kinds of similarity job were checked
