"""Wall time of `snakemake --cores 2` on the default config, from an empty results/ (after setup).

Runs the workflow in a fresh temporary directory (nothing reused, numba's cache of compiled
kernels included), prints the total and per-rule
wall times from Snakemake's own benchmark of each job, and writes a tidy CSV.

    .venv/bin/python benchmarks/demo_end_to_end.py [--cores 2] [--out benchmarks/results/demo_end_to_end.csv]

Target (issue: the demo chain): <= 10 minutes on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def job_times(workdir: Path) -> pd.DataFrame:
    """Per-job wall time from each job's provenance (written by the job itself)."""
    rows = []
    for p in workdir.glob("**/provenance*.json"):
        rec = json.loads(p.read_text())
        rows.append({"job": rec["job"], "seconds": rec.get("wall_seconds"), "file": str(p.relative_to(workdir))})
    return pd.DataFrame(rows)


def snakemake_startup_seconds() -> float:
    """Wall time of importing Snakemake's API, which every `snakemake` call pays once before its
    first job. It loads the executor plugins, and the SLURM one asks `scontrol show config` at
    import: where SLURM's client is installed but no controller answers (this machine while the
    test cluster is down), that call waits about 9 s; without SLURM, or with a controller, it
    returns at once."""
    started = time.time()
    subprocess.run([sys.executable, "-c", "import snakemake.api"], check=True)
    return time.time() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_end_to_end.csv"))
    ap.add_argument("--keep", help="copy the run's figures/ and results/stats here")
    ap.add_argument("--workdir", help="run in this new directory and keep all of it (for "
                    "benchmarks/schedule_replay.py) instead of a temporary one")
    args = ap.parse_args()
    startup = snakemake_startup_seconds()
    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()):
        sys.exit(f"--workdir {args.workdir}: not empty (the run starts from nothing)")
    with (contextlib.nullcontext(args.workdir) if args.workdir
          else tempfile.TemporaryDirectory(prefix="neurobias-demo-")) as tmp:
        work = Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
               "--configfile", args.configfile, "--cores", str(args.cores), "--quiet", "progress"]
        # numba's compiled CPU kernels (corruptions) start from an empty cache too, as on a new checkout
        env = dict(os.environ, NUMBA_CACHE_DIR=str(work / ".numba-cache"))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the start-up probe's CPU left out
        started = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        total = time.time() - started
        # CPU seconds of Snakemake and every job process (user + system): beside the jobs' own
        # wall times, what the run spends outside them (interpreter starts, imports, scheduling)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
        if r.returncode != 0:
            sys.exit(f"workflow failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        jobs = job_times(work)
        if args.keep:
            import shutil
            for sub in ("figures", "results/stats", "results/similarity/demo/diagnostics.json",
                        "results/v1model", "results/brain_likeness"):
                src = work / sub
                dst = Path(args.keep) / sub
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                elif src.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
    per_rule = jobs.groupby("job")["seconds"].agg(["count", "sum", "max"]).sort_values("sum", ascending=False)
    print(f"end-to-end wall time, --cores {args.cores}: {total:.1f} s ({total / 60:.2f} min); target <= 600 s")
    print(f"CPU time of the run (all processes, user + system): {cpu_seconds:.1f} s; the jobs' own wall time "
          f"summed: {jobs['seconds'].sum():.1f} s")
    print(f"idle core time ({args.cores} cores x wall - CPU time): {args.cores * total - cpu_seconds:.1f} s; "
          f"Snakemake's own start-up (import of its API and executor plugins, measured apart): {startup:.1f} s")
    print("job seconds summed per rule (jobs run two at a time):")
    print(per_rule.round(1).to_string())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    quantities = {"wall_seconds": total, "cpu_seconds": cpu_seconds, "job_seconds_sum": jobs["seconds"].sum(),
                  "snakemake_startup_seconds": startup,
                  **{f"job_seconds_sum:{job}": s for job, s in per_rule["sum"].items()}}
    rows = [{"benchmark": "demo_end_to_end", "quantity": q, "value": round(v, 2), "cores": args.cores}
            for q, v in quantities.items()]
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"written {out}")


if __name__ == "__main__":
    main()
