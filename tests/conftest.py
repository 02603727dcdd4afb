import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def small_training_task(n_train: int) -> tuple[dict, np.ndarray]:
    """A 5-class synthetic task and a simulated V1's responses to 80 stimuli (60 training, 20 test
    tier): (the data a training pack shares, as ``neurobias.packed.train_runs`` takes it, responses)."""
    from neurobias.data import CLASS_NAMES, make_synthetic_task
    from neurobias.data.synthetic import make_stimulus_images
    from neurobias.neural.similarity import neural_similarity
    from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
    s = make_synthetic_task(5, n_train=n_train, n_val=64, n_test=64)
    as_split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 80)
    responses = SimulatedV1(V1PopulationParams(n_neurons=20), 1).mean_rates(stim).astype(np.float32)
    tiers = np.array(["train"] * 60 + ["test"] * 20)
    return {"train": as_split("train"), "val": as_split("val"), "test": as_split("test"), "stimuli": stim,
            "stimulus_tiers": tiers, "diagnostic_target": neural_similarity(responses),
            "superclass_of_class": None}, responses


def kill_9_once_written(workdir, config, targets, path, timeout=300) -> None:
    """Start ``snakemake --cores 1 targets`` and kill -9 it and its jobs (their process group) as
    soon as ``path`` exists; asserts that it was still running then (the kill interrupted work)."""
    import os
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                             str(workdir), "--configfile", str(config), "--cores", "1", *targets], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while not Path(path).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert Path(path).exists() and proc.poll() is None, f"snakemake ended or never wrote {path}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_benchmark(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``benchmarks/<script>`` with ``args`` in a fresh interpreter; asserts that it succeeded."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run


def snakemake(workdir, *args, config=TINY, timeout=900, cores=True):
    """Run the workflow through the snakemake CLI from the repository root."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), *(["--cores", "2"] if cores else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def dry_run_counts(workdir, config) -> dict[str, str]:
    """``snakemake -n`` of ``config``: {rule: number of jobs} from its job table (asserts success)."""
    r = snakemake(workdir, "-n", config=config, cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    return job_table(out)


def job_table(out: str) -> dict[str, str]:
    """{rule: number of jobs} from the job table of Snakemake's output (a job's own fields,
    "jobid: 5", "priority: 100", are not rows of it)."""
    return dict(line.split() for line in out.splitlines()
                if len(line.split()) == 2 and line.split()[1].isdigit() and not line.split()[0].endswith(":"))


def training_jobs(counts: dict[str, str]) -> int:
    """Training jobs in a dry run's job table: per-model ``train`` jobs plus one per pack."""
    return int(counts.get("train", 0)) + sum(1 for rule in counts if rule.startswith("train_pack__"))


def assert_nothing_to_do(workdir, config) -> None:
    """A finished run's ``snakemake -n`` schedules no job (outputs, code and params up to date)."""
    r = snakemake(workdir, "-n", config=config, cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Nothing to be done" in out, out[-3000:]


@pytest.fixture(scope="session")
def tiny_local_run(tmp_path_factory):
    """The tiny config run locally once per session; the end-to-end and SLURM tests share it."""
    d = tmp_path_factory.mktemp("tiny_run")
    r = snakemake(d)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


@pytest.fixture(autouse=True)
def _single_thread():
    # Tests share two cores with each other and measure equality, not speed.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
