"""Numerics check of the training fast path (issue 8): does bf16 autocast + channels_last change
what the demo study learns?

    .venv/bin/python benchmarks/fast_path_accuracy.py [--arms none neural_model] [--seeds 0 1 2 3 4] [--jobs 2]

Builds the study's inputs (prepared data, simulated recording, similarity targets) with Snakemake
in a temporary directory, then trains every (arm, seed) twice with ``neurobias.train.train_arm``,
exactly as ``neurobias.jobs.train`` does: the default fast path (precision auto, channels_last
true) and the plain reference loop (precision fp32, channels_last false). Runs go two at a time
with one thread each (``--jobs``), as the workflow runs them with ``--cores 2``; fast and fp32
runs are interleaved.

Prints final validation accuracy mean ± SEM per arm and path and the two-sided Welch t-test
p-value between the paths per arm; writes one row per (arm, path, seed).

Target (issue 8): no detectable difference between the paths (p > 0.05, means within ~1 SEM).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PATHS = {"fast": {"precision": "auto", "channels_last": True},
         "fp32": {"precision": "fp32", "channels_last": False}}


def prepare_inputs(work: Path, configfile: str, study_name: str, study: dict, arms: list[str]) -> None:
    targets = [f"results/data/{study['dataset']}/train.pt", f"results/data/{study['dataset']}/val.pt",
               f"results/similarity/{study_name}/model.npy"]
    targets += [f"results/similarity/{study_name}/{study['arms'][a]['target']}.npy"
                for a in arms if study["arms"][a]["regulariser"] != "none"]
    cmd = [sys.executable, "-m", "snakemake", *sorted(set(targets)), "-s", str(ROOT / "Snakefile"),
           "--directory", str(work), "--configfile", configfile, "--cores", "2", "--quiet", "progress"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"preparing the inputs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def train_one(job: dict) -> dict:
    """One (arm, seed, path) in a worker process, as neurobias.jobs.train calls train_arm."""
    import torch
    from neurobias.data import load_split
    from neurobias.neural.recording import Recording
    from neurobias.train import TrainingConfig, resolve_precision, train_arm

    torch.set_num_threads(job["threads"])
    work, study, arm_name = Path(job["work"]), job["study"], job["arm"]
    arm = study["arms"][arm_name]
    data_dir = work / "results" / "data" / study["dataset"]
    rec = Recording.load(work / "results" / "neural" / study["recording"] / "recording.npz")
    target = None if arm["regulariser"] == "none" else \
        np.load(work / "results" / "similarity" / job["study_name"] / f"{arm['target']}.npy")
    training = TrainingConfig(**study["training"], **PATHS[job["path"]])
    out_dir = work / "runs" / job["path"] / arm_name / f"seed{job['seed']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out_dir / "log.txt", "w") as log, contextlib.redirect_stdout(log):
        history = train_arm(train=load_split(data_dir / "train.pt"), val=load_split(data_dir / "val.pt"),
                            stimuli=rec.images, stimulus_tiers=rec.tiers, target=target,
                            diagnostic_target=np.load(work / "results" / "similarity" / job["study_name"] / "model.npy"),
                            arm=arm, model_cfg=study["model"], training=training, seed=job["seed"],
                            device=job["device"], out_dir=out_dir, progress=False)
    seconds = time.time() - started
    last = history.iloc[-1]
    return {"arm": arm_name, "path": job["path"], "seed": job["seed"],
            "precision": resolve_precision(training.precision, job["device"]),
            "channels_last": training.channels_last, "val_accuracy": round(float(last["val_accuracy"]), 4),
            "heldout_similarity_r": round(float(last["heldout_similarity_r"]), 4), "seconds": round(seconds, 2)}


def sem(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--study", default="demo")
    ap.add_argument("--arms", nargs="+", default=["none", "neural_model"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--device", default=None, help="default: the config's device (auto)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fast_path_accuracy.csv"))
    args = ap.parse_args()

    from scipy import stats

    from neurobias.config import resolve_device
    config = yaml.safe_load(Path(args.configfile).read_text())
    study = config["studies"][args.study]
    device = resolve_device(args.device or config.get("device", "auto"))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="neurobias-fastpath-") as tmp:
        work = Path(tmp)
        prepare_inputs(work, args.configfile, args.study, study, args.arms)
        prepared = time.time() - started
        print(f"inputs prepared in {prepared:.0f} s; training {len(args.arms)} arms x {len(args.seeds)} seeds "
              f"x 2 paths on {device}, {args.jobs} at a time, {args.threads} thread(s) each", flush=True)
        jobs = [{"work": tmp, "study_name": args.study, "study": study, "arm": arm, "seed": seed, "path": path,
                 "device": device, "threads": args.threads}
                for seed in args.seeds for arm in args.arms for path in PATHS]
        rows = []
        import multiprocessing as mp
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for row in pool.map(train_one, jobs):
                rows.append(row)
                print(f"  {row['arm']:>14} seed {row['seed']} {row['path']:>4} ({row['precision']}): "
                      f"val accuracy {row['val_accuracy']:.4f}, {row['seconds']:.1f} s", flush=True)
    total = time.time() - started

    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)

    summary = []
    for arm in args.arms:
        a = frame[frame["arm"] == arm]
        fast = a[a["path"] == "fast"].sort_values("seed")
        fp32 = a[a["path"] == "fp32"].sort_values("seed")
        p = stats.ttest_ind(fast["val_accuracy"], fp32["val_accuracy"], equal_var=False).pvalue
        summary.append({"arm": arm, "n": len(fast),
                        "fast (bf16+CL) val acc": f"{fast['val_accuracy'].mean():.4f} ± {sem(fast['val_accuracy']):.4f}",
                        "fp32 NCHW val acc": f"{fp32['val_accuracy'].mean():.4f} ± {sem(fp32['val_accuracy']):.4f}",
                        "diff (fast - fp32)": f"{fast['val_accuracy'].mean() - fp32['val_accuracy'].mean():+.4f}",
                        "Welch p": f"{p:.3f}",
                        "s/run fast": f"{fast['seconds'].mean():.1f}", "s/run fp32": f"{fp32['seconds'].mean():.1f}"})
    print()
    print(f"study {args.study}: final val accuracy, mean ± SEM over seeds {args.seeds}; "
          f"fast precision = {frame.loc[frame['path'] == 'fast', 'precision'].iloc[0]}")
    print(pd.DataFrame(summary).to_string(index=False))
    print(f"total {total:.0f} s ({prepared:.0f} s preparing inputs); written {out}")


if __name__ == "__main__":
    main()
