import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


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
    return dict(line.split()[:2] for line in out.splitlines()
                if len(line.split()) == 2 and line.split()[1].isdigit())


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
