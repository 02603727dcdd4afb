"""Models trained per hour, packed vs one job per model: the same (arm, seed) runs trained through
`snakemake --cores C` twice, side by side in one run, once with the study's ``pack: 1`` (one job,
one process per model) and once with ``pack: N`` (N models per job and process).

Both sides start from the same finished upstream (data, recording, V1 model, targets: built once,
copied), run only the study's training targets, and are timed from the snakemake call to its
exit; the order of the two sides alternates over ``--repeats``. The models of both sides are
compared file by file (the packed engine must write the same bytes).

    .venv/bin/python benchmarks/packed_training.py [--configfile config.yaml] [--study demo] [--pack 10]
        [--cores 2] [--repeats 1] [--out benchmarks/results/packed_training.csv]

Target (packed-training issue): >= 3x models per hour on this CPU for the demo net.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: Path, cores: int, *targets: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", str(cores), *targets, "--quiet", "all"]
    started = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"snakemake failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.time() - started


def model_targets(config: dict, study: str) -> list[str]:
    s = config["studies"][study]
    return [f"results/train/{study}/{arm}/seed{seed}/model.pt" for arm in s["arms"] for seed in s["seeds"]]


def upstream_targets(config: dict, study: str) -> list[str]:
    """What the study's training reads: its targets, the diagnostic target, data and recording."""
    s = config["studies"][study]
    kinds = sorted({a["target"] for a in s["arms"].values() if "target" in a} | {"model"})
    return [f"results/similarity/{study}/{k}.npy" for k in kinds]


def same_files(a: Path, b: Path, models: list[str]) -> bool:
    import torch
    for m in models:
        x, y = (torch.load(d / m, weights_only=True)["state_dict"] for d in (a, b))
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
        h = str(Path(m).with_name("history.csv"))
        if (a / h).read_text() != (b / h).read_text():
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--study", default="demo")
    ap.add_argument("--pack", type=int, default=10)
    ap.add_argument("--seeds", type=int, help="train this many seeds per arm (default: the study's)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "packed_training.csv"))
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.configfile).read_text())
    config["studies_to_run"] = [args.study]
    if args.seeds:
        config["studies"][args.study]["seeds"] = list(range(args.seeds))
    models = model_targets(config, args.study)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neurobias-pack-") as tmp:
        tmp = Path(tmp)
        configs = {}
        for pack in (1, args.pack):
            config["studies"][args.study]["pack"] = pack
            configs[pack] = tmp / f"pack{pack}.yaml"
            configs[pack].write_text(yaml.safe_dump(config, sort_keys=False))
        base = tmp / "upstream"
        print("building the upstream once ...", flush=True)
        snakemake(base, configs[1], args.cores, *upstream_targets(config, args.study))
        for repeat in range(args.repeats):
            order = (1, args.pack) if repeat % 2 == 0 else (args.pack, 1)
            dirs = {}
            for pack in order:
                dirs[pack] = tmp / f"r{repeat}_pack{pack}"
                shutil.copytree(base, dirs[pack], ignore=shutil.ignore_patterns("locks"))
                seconds = snakemake(dirs[pack], configs[pack], args.cores, *models)
                per_hour = len(models) / seconds * 3600
                print(f"repeat {repeat}, pack {pack}: {len(models)} models in {seconds:.1f} s "
                      f"({per_hour:.0f} models/hour)", flush=True)
                rows.append({"benchmark": "packed_training", "study": args.study, "repeat": repeat, "pack": pack,
                             "models": len(models), "cores": args.cores, "seconds": round(seconds, 2),
                             "models_per_hour": round(per_hour, 1)})
            identical = same_files(dirs[1], dirs[args.pack], models)
            rows[-1]["identical_to_unpacked"] = rows[-2]["identical_to_unpacked"] = identical
            print(f"repeat {repeat}: packed models identical to one-job-per-model: {identical}", flush=True)
            for d in dirs.values():
                shutil.rmtree(d)
    frame = pd.DataFrame(rows)
    by_pack = frame.groupby("pack")["models_per_hour"].median()
    ratio = by_pack[args.pack] / by_pack[1]
    print(f"models per hour, pack {args.pack} / pack 1 (median of {args.repeats}): {ratio:.2f}x (target >= 3x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(f"written {out}")


if __name__ == "__main__":
    main()
