"""The cluster path for real: `snakemake --profile slurm all`, typed in the repository root,
against a running SLURM (CI starts one with ci/slurm/up.sh: slurmctld + slurmd + a fake GPU gres).

Skipped where no SLURM answers, unless NEUROBIAS_REQUIRE_SLURM=1 (CI), where that is a failure.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TINY

# the jobs (provenance "job") of the tiny config that compute on the device
GPU_JOBS = {"fit_v1_model", "train", "evaluate_gaussian_noise", "similarity_model"}
TIMEOUT = 600


def slurm_ready() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in r.stdout.split())


pytestmark = [pytest.mark.slow]
if not slurm_ready():
    if os.environ.get("NEUROBIAS_REQUIRE_SLURM") == "1":
        pytestmark.append(pytest.mark.usefixtures("_fail_no_slurm"))
    else:
        pytestmark.append(pytest.mark.skip(reason="no SLURM cluster answers (CI starts one with ci/slurm/up.sh)"))


@pytest.fixture
def _fail_no_slurm():
    pytest.fail("NEUROBIAS_REQUIRE_SLURM=1 but `sinfo` shows no usable node; did ci/slurm/up.sh run?")


def slurm_snakemake(workdir, *args, config=TINY):
    """The user's literal command, from the repository root, plus where to work and what config."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--profile", "slurm", *args,
           "--configfile", str(config), "--directory", str(workdir)]
    started = time.time()
    r = subprocess.run(["timeout", "-k", "10", str(TIMEOUT), *cmd], cwd=ROOT, capture_output=True, text=True)
    return r, time.time() - started


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("slurm_run")
    r, seconds = slurm_snakemake(d, "all")
    print(f"snakemake --profile slurm all (tiny config): {seconds:.1f} s")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    return d


def provenances(run_dir):
    return [(p, json.loads(p.read_text())) for p in sorted(run_dir.glob("**/provenance*.json"))]


def test_every_job_ran_under_slurm_with_gpus_where_asked(slurm_run):
    records = provenances(slurm_run)
    jobs = {rec["job"] for _, rec in records}
    assert {"make_dataset", "make_recording", "fit_v1_model", "train", "evaluate_gaussian_noise",
            "stats", "figure_noise_robustness", "similarity_diagnostics"} <= jobs
    ids = []
    for path, rec in records:
        assert rec["slurm_job_id"], f"{path} was not written inside a SLURM job"
        ids.append(rec["slurm_job_id"])
        gpu_job = rec["job"] in GPU_JOBS
        # SLURM sets CUDA_VISIBLE_DEVICES only for jobs it gave a GPU (sbatch --gpus).
        assert (rec["cuda_visible_devices"] not in (None, "")) == gpu_job, (path, rec["cuda_visible_devices"])
    assert len(set(ids)) == len(ids), "each job should be its own SLURM job"


def test_outputs_equal_a_local_run(slurm_run, tiny_local_run):
    compared = 0
    for pattern in ("results/eval/**/*.csv", "results/train/**/history.csv", "results/stats/**/*.csv"):
        for local in sorted(tiny_local_run.glob(pattern)):
            other = slurm_run / local.relative_to(tiny_local_run)
            pd.testing.assert_frame_equal(pd.read_csv(local), pd.read_csv(other), obj=str(local.relative_to(tiny_local_run)))
            compared += 1
    for local in sorted(tiny_local_run.glob("results/similarity/**/*.npy")):
        np.testing.assert_array_equal(np.load(local), np.load(slurm_run / local.relative_to(tiny_local_run)))
        compared += 1
    assert compared >= 4 + 8 + 2 + 3  # noise tables (one per arm), histories, stats, similarity targets


def test_a_packed_study_trains_in_one_gpu_job_per_pack(tmp_path, tiny_local_run):
    """pack: 3 on the tiny study's 8 models: three SLURM jobs, each given a GPU, each writing its
    runs' usual files, equal to the local one-job-per-model run's."""
    import yaml
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"]["pack"] = 3
    packed = tmp_path / "packed.yaml"
    packed.write_text(yaml.safe_dump(config, sort_keys=False))
    work = tmp_path / "work"
    shutil.copytree(tiny_local_run, work, ignore=shutil.ignore_patterns("locks", "train"))
    models = sorted(str(p.relative_to(tiny_local_run)) for p in tiny_local_run.glob("results/train/**/model.pt"))
    assert len(models) == 8
    r, _ = slurm_snakemake(work, *models, config=packed)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    records = [json.loads((work / m).with_name("provenance.json").read_text()) for m in models]
    jobs = {rec["slurm_job_id"] for rec in records}
    assert len(jobs) == 3 and None not in jobs
    assert all(rec["cuda_visible_devices"] not in (None, "") for rec in records)  # one GPU per pack job
    assert sorted(rec["pack"]["runs"] for rec in records) == [2, 2, 3, 3, 3, 3, 3, 3]
    import torch
    for m in models:  # byte for byte: the same CPU, the same models
        history = str(Path(m).with_name("history.csv"))
        assert (work / history).read_text() == (tiny_local_run / history).read_text(), history
        a, b = (torch.load(d / m, weights_only=True)["state_dict"] for d in (work, tiny_local_run))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), m


def test_a_failing_job_ends_the_run_with_its_log_path(tmp_path):
    # A user forcing CUDA on nodes without a usable GPU: the job itself must fail, and snakemake
    # must exit non-zero (no hang waiting on the status poll) and say where the job's log is.
    r, seconds = slurm_snakemake(tmp_path, "results/v1model/tinyv1/metrics.json", "--retries", "0",
                                 "--config", "device=cuda")
    out = r.stdout + r.stderr
    assert r.returncode not in (0, 124, 137), out[-3000:]
    assert seconds < TIMEOUT
    logs = [w for w in out.split() if ".snakemake/slurm_logs/" in w and w.endswith(".log")]
    assert logs, out[-3000:]
    text = "\n".join(Path(p if Path(p).is_absolute() else tmp_path / p).read_text()
                     for p in set(logs) if Path(p if Path(p).is_absolute() else tmp_path / p).exists())
    assert "no CUDA device is visible" in text or "no CUDA device is visible" in (
        tmp_path / "logs/fit_v1_model/tinyv1.log").read_text()
