"""`snakemake -n` wall time for a config (default: the largest preset, studies/li2019.yaml), on a
machine without any of its data: the job graph must build without downloads.

    .venv/bin/python benchmarks/dry_run.py [--configfile studies/li2019.yaml] [--repeats 5]

Target (li2019 preset issue): <= 5 s. Prints every repeat, the median, and the job count.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(ROOT / "studies" / "li2019.yaml"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dry_run.csv"))
    args = ap.parse_args()
    times, jobs = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            started = time.time()
            r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"),
                                "--directory", tmp, "--configfile", args.configfile],
                               capture_output=True, text=True)
            times.append(time.time() - started)
            if r.returncode != 0:
                sys.exit(r.stdout[-2000:] + r.stderr[-2000:])
            m = re.search(r"^total\s+(\d+)", r.stdout, re.M)
            jobs = int(m.group(1)) if m else None
    median = statistics.median(times)
    print(f"snakemake -n --configfile {Path(args.configfile).name}: {jobs} jobs; "
          f"runs {', '.join(f'{t:.2f}' for t in times)} s; median {median:.2f} s (target <= 5 s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"benchmark": "dry_run", "config": Path(args.configfile).name, "jobs": jobs,
                   "median_seconds": round(median, 3), "repeats": args.repeats}]).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
