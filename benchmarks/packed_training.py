"""Models trained per hour, packed vs one job per model: the same (arm, seed) runs trained through
`snakemake --cores C` twice, side by side in one run, once with the study's ``pack: 1`` (one job,
one process per model) and once with ``pack: N`` (N models per job and process).

Both sides start from the same finished upstream (data, recording, V1 model, targets: built once,
copied), run only the study's training targets, and are timed from the snakemake call to its
exit; the order of the two sides alternates over ``--repeats``. The models of both sides are
compared file by file: the sequential engine must write the same bytes; the stacked engine's
numbers differ in their last bits (its convolutions are grouped ones, summed in another order), so
for it the largest weight difference and each side's mean final validation accuracy are reported.

    .venv/bin/python benchmarks/packed_training.py [--configfile config.yaml] [--study demo] [--pack 10]
        [--cores 2] [--repeats 1] [--out benchmarks/results/packed_training.csv]

On a GPU, the issue's comparison itself (one job and one process per model, each paying Python's,
torch's and CUDA's start-up, against packs stacked on the device), one job at a time so that both
sides have the GPU alone, with the GPU's mean utilisation per side (``nvidia-smi``, as
stacked_training.py measures it):

    python benchmarks/packed_training.py --device cuda --engine stacked --cores 1 --seeds 3 --pack 10

The one-job-per-model side always runs the one-model loop (pack 1, engine sequential): a study
whose engine is stacked trains even a single run as a stack of one. ``--device`` and ``--engine``
are written into both sides' configs (``device``, the study's ``pack_engine``).

Target (packed-training issue): >= 3x models per hour on this CPU for the demo net; >= 10x on a
GPU for the small nets.
"""

from __future__ import annotations

import argparse
import copy
import io
import math
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


def side_config(config: dict, study: str, pack: int, engine: str) -> dict:
    """The config of one side: the study trained ``pack`` runs per job with ``engine``, except the
    one-job-per-model side (pack 1), which always runs the one-model loop."""
    side = copy.deepcopy(config)
    side["studies"][study].update(pack=pack, pack_engine="sequential" if pack == 1 else engine)
    return side


def compare_models(a: Path, b: Path, models: list[str]) -> dict:
    """How the two sides' models differ: whether every model.pt's weights and every history.csv
    are the same bit for bit, the largest absolute difference of any weight, and each side's mean
    validation accuracy after the last epoch."""
    import torch
    identical, largest, final = True, 0.0, {a: [], b: []}
    for m in models:
        x, y = (torch.load(d / m, weights_only=True, map_location="cpu")["state_dict"] for d in (a, b))
        if x.keys() != y.keys():
            raise SystemExit(f"{m}: the two sides' models have different parameters")
        for k in x:
            if not torch.equal(x[k], y[k]):
                identical = False
                if x[k].is_floating_point():
                    largest = max(largest, float((x[k].double() - y[k].double()).abs().max()))
        h = str(Path(m).with_name("history.csv"))
        histories = {d: (d / h).read_text() for d in (a, b)}
        identical &= histories[a] == histories[b]
        for d, text in histories.items():
            final[d].append(float(pd.read_csv(io.StringIO(text))["val_accuracy"].iloc[-1]))
    return {"identical": identical, "max_weight_difference": largest,
            "val_accuracy": (sum(final[a]) / len(models), sum(final[b]) / len(models))}


def gpu_sampler(device: str | None):
    """stacked_training.py's GPU sampler on a CUDA device (utilisation of the whole GPU while a
    side's snakemake runs), else a context that measures nothing."""
    import contextlib
    if not (device or "").startswith("cuda"):
        return contextlib.nullcontext()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from stacked_training import GpuSampler
    return GpuSampler(torch.device(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--study", default="demo")
    ap.add_argument("--pack", type=int, default=10)
    ap.add_argument("--seeds", type=int, help="train this many seeds per arm (default: the study's)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", help="the config's device on both sides, e.g. cuda (default: the config's)")
    ap.add_argument("--engine", choices=["sequential", "stacked"],
                    help="the packed side's pack_engine (default: the study's; the other side is always sequential)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "packed_training.csv"))
    args = ap.parse_args()
    config = yaml.safe_load(Path(args.configfile).read_text())
    config["studies_to_run"] = [args.study]
    if args.seeds:
        config["studies"][args.study]["seeds"] = list(range(args.seeds))
    if args.device:
        config["device"] = args.device
    engine = args.engine or config["studies"][args.study].get("pack_engine", "sequential")
    models = model_targets(config, args.study)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neurobias-pack-") as tmp:
        tmp = Path(tmp)
        configs, engines = {}, {}
        for pack in (1, args.pack):
            side = side_config(config, args.study, pack, engine)
            engines[pack] = side["studies"][args.study]["pack_engine"]
            configs[pack] = tmp / f"pack{pack}.yaml"
            configs[pack].write_text(yaml.safe_dump(side, sort_keys=False))
        base = tmp / "upstream"
        print("building the upstream once ...", flush=True)
        snakemake(base, configs[1], args.cores, *upstream_targets(config, args.study))
        for repeat in range(args.repeats):
            order = (1, args.pack) if repeat % 2 == 0 else (args.pack, 1)
            dirs = {}
            for pack in order:
                dirs[pack] = tmp / f"r{repeat}_pack{pack}"
                shutil.copytree(base, dirs[pack], ignore=shutil.ignore_patterns("locks"))
                with gpu_sampler(args.device) as sampler:
                    seconds = snakemake(dirs[pack], configs[pack], args.cores, *models)
                per_hour = len(models) / seconds * 3600
                utilisation = sampler.mean_util() if sampler is not None else math.nan
                print(f"repeat {repeat}, pack {pack}: {len(models)} models in {seconds:.1f} s "
                      f"({per_hour:.0f} models/hour)" + ("" if math.isnan(utilisation) else
                                                         f", mean GPU utilisation {utilisation:.0f} %"), flush=True)
                rows.append({"benchmark": "packed_training", "study": args.study, "repeat": repeat, "pack": pack,
                             "engine": engines[pack], "device": config["device"],
                             "models": len(models), "cores": args.cores, "seconds": round(seconds, 2),
                             "models_per_hour": round(per_hour, 1), "gpu_utilisation": utilisation})
            diff = compare_models(dirs[1], dirs[args.pack], models)
            accuracy = dict(zip((1, args.pack), diff["val_accuracy"]))
            for row in rows[-2:]:
                row.update(identical_to_unpacked=diff["identical"], max_weight_difference=diff["max_weight_difference"],
                           mean_final_val_accuracy=round(accuracy[row["pack"]], 4))
            print(f"repeat {repeat}: packed models identical to one-job-per-model: {diff['identical']} (largest "
                  f"weight difference {diff['max_weight_difference']:.3g}; mean final validation accuracy, one job "
                  f"per model {diff['val_accuracy'][0]:.4f}, packed {diff['val_accuracy'][1]:.4f})", flush=True)
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
