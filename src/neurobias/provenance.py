"""``provenance.json`` beside every result: what produced it, from which config, where and when."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from .config import config_hash

PACKAGES = ("neurobias", "torch", "torchvision", "numpy", "pandas", "scipy", "statsmodels",
            "scikit-learn", "matplotlib", "seaborn", "snakemake")


def git_revision(cwd: str | Path | None = None) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_provenance(directory: str | Path, *, job: str, config_slice: dict, seed: int | None = None,
                     device: str | None = None, started: float | None = None, extra: dict | None = None,
                     filename: str = "provenance.json") -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "job": job,
        "config": config_slice,
        "config_hash": config_hash(config_slice),
        "seed": seed,
        "device": device,
        "git_revision": git_revision(Path(__file__).parent),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": None if started is None else round(time.time() - started, 3),
    }
    record.update(extra or {})
    path = directory / filename
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path
