"""Replay a finished run's jobs through the workflow's job graph on N cores, with the rules'
stage priorities (workflow/rules/common.smk: STAGE_PRIORITY) and without any: the wall time and
idle core time each order gives, side by side, from the same measured job times.

    .venv/bin/python benchmarks/schedule_replay.py --run DIR [--cores 2] [--out CSV]

DIR is a finished `snakemake --cores N` run of the default config (for example
`benchmarks/demo_end_to_end.py --workdir DIR`). A job's time is measured from that run: from the
moment Snakemake started it (its log, to the second) to the last write of its outputs, so the
process start and imports are in it. The job graph and the priorities are the current workflow's
(`snakemake --d3dag` and a dry run in an empty directory; its job ids must match the run's, which
they do for the same config, and the script stops if they do not).

The replay chooses jobs as Snakemake's scheduler does: among the ready jobs, the set with the
largest summed priority that fits the free cores, then the one using the most cores. Ties are
broken in a random order (Snakemake's solver breaks them arbitrarily): the script replays each
side with 20 orders and prints the range. It leaves out what neither order changes: Snakemake's
own time between jobs, and a job running slower while another shares the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
JOB_BLOCK = re.compile(r"^\[(?P<stamp>[^\]]+)\]\n(?:local)?rule (?P<rule>\S+):\n(?P<body>(?:    .*\n)+)", re.M)


def job_blocks(text: str) -> dict[int, dict]:
    """jobid -> {rule, output, threads, priority, started} from Snakemake's job listing."""
    jobs = {}
    for m in JOB_BLOCK.finditer(text):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m["body"], re.M))
        jobs[int(fields["jobid"])] = {
            "rule": m["rule"],
            "output": [o.strip() for o in fields.get("output", "").split(",") if o.strip()],
            "threads": int(fields.get("threads", 1)),
            "priority": int(fields.get("priority", 0)),
            "started": datetime.datetime.strptime(m["stamp"], "%a %b %d %H:%M:%S %Y").timestamp(),
        }
    return jobs


def workflow_graph(configfile: str, cores: int) -> tuple[dict[int, set], dict[int, dict]]:
    """(dependencies, dry-run listing) of the workflow on an empty directory."""
    with tempfile.TemporaryDirectory(prefix="neurobias-replay-") as empty:
        base = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", empty,
                "--configfile", configfile, "--cores", str(cores)]
        dag = json.loads(subprocess.run(base + ["--d3dag"], capture_output=True, text=True, check=True).stdout)
        listing = job_blocks(subprocess.run(base + ["-n"], capture_output=True, text=True, check=True).stdout)
    deps = {n["id"]: set() for n in dag["nodes"]}
    for edge in dag["edges"]:
        deps[edge["v"]].add(edge["u"])
    return deps, listing


def measured_seconds(run: Path) -> dict[int, tuple[str, float]]:
    """jobid -> (rule, seconds from its start in the run's log to its outputs' last write), from the
    log of the run that started the most jobs (later calls on a finished run start none)."""
    logs = [job_blocks(p.read_text()) for p in sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))]
    if not logs:
        sys.exit(f"{run}: no Snakemake log under .snakemake/log (is it a finished run's directory?)")
    out = {}
    for jobid, job in max(logs, key=len).items():
        paths = [run / p for p in job["output"]]
        if not all(p.exists() for p in paths):
            continue
        # a target rule (all) has no outputs and no body
        out[jobid] = (job["rule"], max((p.stat().st_mtime - job["started"] for p in paths), default=0.0))
    return out


def best_set(ready: list, threads, priority, free: int) -> tuple:
    """The ready jobs Snakemake would start on ``free`` cores: the largest summed priority, then the
    most cores used (a knapsack over the cores; among equals, the first in ``ready``'s order)."""
    best = [((0, 0), ())] * (free + 1)  # best[c]: (key, jobs) using at most c cores
    for j in ready:
        for c in range(free, threads[j] - 1, -1):
            (p, n), jobs = best[c - threads[j]]
            key = (p + priority[j], n + threads[j])
            if key > best[c][0]:
                best[c] = (key, jobs + (j,))
    return best[free][1]


def replay(deps, seconds, threads, priority, cores: int, rng: random.Random) -> float:
    """Wall time of the run when jobs start in the scheduler's order."""
    tie = {j: rng.random() for j in deps}
    done, started, running, free, now = set(), set(), [], cores, 0.0
    while len(done) < len(deps):
        ready = sorted((j for j in deps if j not in started and deps[j] <= done), key=tie.get)
        best = best_set(ready, threads, priority, free)
        for j in best:
            started.add(j)
            free -= threads[j]
            running.append((now + seconds[j], j))
        running.sort()
        now, j = running.pop(0)
        free += threads[j]
        done.add(j)
    return now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run's working directory")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--orders", type=int, default=20, help="random tie-breaking orders per side")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "schedule_replay.csv"))
    args = ap.parse_args()
    deps, listing = workflow_graph(args.configfile, args.cores)
    measured = measured_seconds(Path(args.run))
    for jobid, job in listing.items():
        if jobid not in measured or measured[jobid][0] != job["rule"]:
            sys.exit(f"job {jobid} ({job['rule']}) of the workflow has no matching job in the run {args.run}: "
                     "replay a run of the same config, finished")
    seconds = {j: measured[j][1] for j in deps}
    threads = {j: listing[j]["threads"] if j in listing else 1 for j in deps}
    work = sum(seconds[j] * threads[j] for j in deps)
    rows = []
    for side, priority in (("no priorities", {j: 0 for j in deps}),
                           ("stage priorities", {j: listing[j]["priority"] if j in listing else 0 for j in deps})):
        walls = [replay(deps, seconds, threads, priority, args.cores, random.Random(k)) for k in range(args.orders)]
        for k, wall in enumerate(walls):
            rows.append({"side": side, "order": k, "wall_seconds": round(wall, 2),
                         "idle_core_seconds": round(args.cores * wall - work, 2)})
        print(f"{side:17s} wall {statistics.median(walls):6.1f} s (range {min(walls):.1f}-{max(walls):.1f}), "
              f"idle core time {args.cores * statistics.median(walls) - work:5.1f} s")
    frame = pd.DataFrame(rows)
    medians = frame.groupby("side")["wall_seconds"].median()
    print(f"{len(listing)} jobs, {work:.1f} core-seconds of work; lower bound {work / args.cores:.1f} s on "
          f"{args.cores} cores; stage priorities / none (median wall): "
          f"{medians['stage priorities'] / medians['no priorities']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.assign(cores=args.cores, run=os.path.basename(os.path.normpath(args.run))).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
