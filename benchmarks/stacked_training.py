"""Models trained per hour in one process: N models trained one after another (``train_runs``
engine "sequential") vs the same N models trained side by side as one stacked network (engine
"stacked", ``torch.func`` vmap over stacked parameters, src/neurobias/stacked.py), side by side in
one run, for the stacked-training issue's three nets:

  demo      the demo study's net: resnet18, width 8
  cornet_z  CORnet-Z at width 16, as the federer_demo study
  resnet18  a standard ResNet-18: resnet18, width 64
  vgg11     the safarani_demo study's net: VGG-11 with BatchNorm, width 8 (dropout in its head)

Each side trains the same N (arm, seed) runs (seeds 0..N-1) on the same synthetic task (the
training images of ``--images``, a validation split scored after every epoch, the simulated V1's
similarity matrix as the target) through ``neurobias.packed.train_runs``, writing its runs into a
temporary directory. What is timed is the whole call: preparing each run, building its network,
training, the per-epoch validation scores, checkpoints and the written model.pt/history.csv,
i.e. what a pack job spends per model besides starting up. A cheap warm-up of each net (2 models,
2 steps, each engine; ``--no-warmup`` skips it) runs before its sides are timed, so CUDA's start-up
and the creation of the first kernels (oneDNN's primitives) are not charged to whichever side goes
first; the sides then alternate their order from net to net and from repeat to repeat, and the
fastest of ``--repeats`` per side counts. On a shared machine one repeat is noisy (the 2-core
reference CPU gave the demo 0.60x, 0.65x and 1.17x in three single-repeat runs of 5 models on 640
images, while other jobs shared the machine): use ``--repeats 2`` or more. The sequential side
trains in channels_last layout, as the one-model loop does by default, the stacked side in NCHW
(vmap's inputs are 5-D), so the ratio includes the layout's effect.

The arm (``--arm``): "similarity" (the default; the demo's regularised arms are what get packed)
is Li et al. 2019's similarity loss on one middle layer of each net (layer2 of the ResNets, V2 of
CORnet-Z, conv3_1 of VGG-11), 32 stimulus images per batch, alpha 10 (CORnet-Z: 1, see NETS;
``--alpha`` sets it for all); "none" is plain cross-entropy; "mtl" is Safarani et al. 2021's
multi-task arm on the same layer (a Gaussian readout predicting the simulated V1's responses, one
neural batch of 32 per four classification batches, as the safarani_demo study). A side that fails (a diverging run, a stack too large for the
device) is reported with its traceback and an error in the CSV, and the benchmark exits 1.

Printed per net: each side's seconds and models/hour and the ratio stacked/sequential
(= sequential seconds / stacked seconds; > 1: stacking trains more models per hour), and the
largest difference between the two sides' first-epoch train_loss of the same run (history.csv):
vmap turns the convolutions into grouped ones, which sum in another order, so the numbers differ
in their last bits and training amplifies that; it is reported, not asserted. On CUDA each side's
mean GPU utilisation (``nvidia-smi`` polled every 0.5 s in a background thread, else
``torch.cuda.utilization()``) and peak allocated memory (``torch.cuda.max_memory_allocated``, reset
between sides) are measured too; on a CPU they are not (empty in the CSV). The CSV
(``--out``) has one row per net and side.

One job per model: on a cluster without packs every model is its own job, which starts Python,
imports torch and the package and (on a GPU) creates a CUDA context before its model trains. That
start-up is timed here too, as the wall time of fresh interpreters that do just that (median of 3),
and the third figure printed, ``ratio vs one job per model``, is the sequential side's seconds plus
N start-ups against the stacked side's: a lower bound of the issue's comparison, since a real job
also pays its scheduler's overhead and its first kernels (benchmarks/packed_training.py times real
Snakemake jobs, on the CPU).

Targets (stacked-training issue): >= 10x models per hour on a GPU for the small nets (demo,
CORnet-Z), whose single-model steps leave the device nearly idle. On the 2-core reference CPU
stacking is slower than one after another: oneDNN's grouped convolutions are no faster than
separate ones (measured with this script on 2026-12-03: 0.54x for the demo net, 0.90x for CORnet-Z,
0.47x for ResNet-18), which is why the sequential engine stays the default there.

On a GPU machine:

    .venv/bin/python benchmarks/stacked_training.py --device cuda
        [--models 10] [--nets demo cornet_z resnet18] [--epochs 1] [--images 2000] [--repeats 1]

On this CPU, small:

    .venv/bin/python benchmarks/stacked_training.py --device cpu --nets demo cornet_z --models 5 --images 640
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurobias.data import CLASS_NAMES, make_synthetic_task
from neurobias.data.synthetic import make_stimulus_images
from neurobias.neural.similarity import neural_similarity
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
from neurobias.packed import PackedRun, train_runs
from neurobias.train import TrainingConfig, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("sequential", "stacked")

# The three nets, the middle layer each one's similarity arm regularises, and its alpha:
# Li's 10 for the ResNets; 1 for CORnet-Z, which has no BatchNorm and at alpha 10 (on V2, at the
# federer_demo's rate 0.05) diverges within the first epoch for 2 of 5 seeds, on both engines
# (measured). The weight does not change the cost of a step.
NETS = {
    "demo": ({"architecture": "resnet18", "width": 8}, "layer2", 10.0),
    "cornet_z": ({"architecture": "cornet_z", "width": 16}, "V2", 1.0),
    "resnet18": ({"architecture": "resnet18", "width": 64}, "layer2", 10.0),
    "vgg11": ({"architecture": "vgg11", "width": 8, "batch_norm": True}, "conv3_1", 10.0),
}
N_STIMULI, N_TRAIN_STIMULI = 160, 120


def make_task(n_train: int, n_val: int, image_size: int) -> tuple[dict, np.ndarray]:
    """The shared data of every run (``train_runs``' ``shared``, with the responses an MTL head
    predicts) and the similarity target."""
    s = make_synthetic_task(0, n_train=n_train, n_val=n_val, n_test=64, image_size=image_size)
    as_split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stimuli = make_stimulus_images(2, N_STIMULI, image_size)
    responses = SimulatedV1(V1PopulationParams(n_neurons=100, image_size=image_size), 1).mean_rates(stimuli)
    target = neural_similarity(responses.astype(np.float32))
    tiers = np.array(["train"] * N_TRAIN_STIMULI + ["test"] * (N_STIMULI - N_TRAIN_STIMULI))
    shared = {"train": as_split("train"), "val": as_split("val"), "test": as_split("test"), "stimuli": stimuli,
              "stimulus_tiers": tiers, "diagnostic_target": target, "superclass_of_class": None,
              "responses": responses.astype(np.float32)}
    return shared, target


def make_arm(kind: str, layer: str, alpha: float) -> dict:
    if kind == "none":
        return {"regulariser": "none"}
    if kind == "mtl":
        return {"regulariser": "mtl", "target": "responses_model", "layer": layer, "batch_ratio": 0.25,
                "stimulus_batch_size": 32}
    return {"regulariser": "similarity", "alpha": alpha, "layers": [layer], "stimulus_batch_size": 32}


def make_runs(net: str, arm_kind: str, n: int, shared: dict, target: np.ndarray, out: Path,
              alpha: float | None = None) -> list[PackedRun]:
    """``n`` runs (seeds 0..n-1) of the net's arm: the similarity arm's ``target``, an MTL
    head's the responses in ``shared``."""
    model_cfg, layer, net_alpha = NETS[net]
    arm = make_arm(arm_kind, layer, net_alpha if alpha is None else alpha)
    arm_target = {"none": None, "similarity": target, "mtl": shared["responses"]}[arm["regulariser"]]
    return [PackedRun(arm=dict(arm), model_cfg=dict(model_cfg), seed=seed, target=arm_target,
                      context={"responses": shared["responses"]}, out_dir=out / f"seed{seed}")
            for seed in range(n)]


def training_config(epochs: int, batch_size: int, precision: str) -> TrainingConfig:
    """The demo study's optimiser and schedule (cosine, constant across the stack)."""
    return TrainingConfig(epochs=epochs, batch_size=batch_size, lr=0.05, momentum=0.9, weight_decay=5e-4,
                          lr_schedule={"kind": "cosine"}, precision=precision)


class GpuSampler:
    """Mean GPU utilisation (%) and the largest memory.used (MiB) while it runs: ``nvidia-smi``
    polled every ``interval`` s in a background thread, else ``torch.cuda.utilization()``."""

    QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, device: torch.device, interval: float = 0.5):
        self.device, self.interval = device, interval
        self.util: list[float] = []
        self.memory: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._select = self._nvidia_smi_selector()

    def _nvidia_smi_selector(self) -> list[str] | None:
        if shutil.which("nvidia-smi") is None:
            return None
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        by_uuid = [] if uuid is None else ["-i", str(uuid) if str(uuid).startswith("GPU-") else f"GPU-{uuid}"]
        for candidate in (by_uuid, ["-i", str(index)], []):  # [] (every GPU, the first line): one GPU
            try:
                r = subprocess.run(["nvidia-smi", *candidate, *self.QUERY], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if r.returncode == 0 and r.stdout.strip():
                return candidate
        return None

    def method(self) -> str:
        return "nvidia-smi" if self._select is not None else "torch.cuda.utilization"

    def _sample(self) -> None:
        if self._select is not None:
            r = subprocess.run(["nvidia-smi", *self._select, *self.QUERY], capture_output=True, text=True, timeout=10)
            util, memory = (float(v) for v in r.stdout.strip().splitlines()[0].split(","))
            self.util.append(util)
            self.memory.append(memory)
        else:
            self.util.append(float(torch.cuda.utilization(self.device)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception:  # noqa: BLE001  (no sampler: the columns stay empty)
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mean_util(self) -> float:
        return float(np.mean(self.util)) if self.util else math.nan

    def max_memory(self) -> float:
        return float(max(self.memory)) if self.memory else math.nan


def train_side(side: str, runs: list[PackedRun], training: TrainingConfig, device: torch.device,
               shared: dict, verbose: bool) -> dict:
    """Train ``runs`` with engine ``side``; seconds, GPU figures and what the engine printed."""
    cuda = device.type == "cuda"
    log = io.StringIO()
    sampler = GpuSampler(device) if cuda else None
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(contextlib.redirect_stdout(log))
        if sampler is not None:
            stack.enter_context(sampler)
        started = time.perf_counter()
        train_runs(runs, training=training, device=device, progress=verbose, engine=side, **task_data(shared))
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "log": log.getvalue(),
            "gpu_util_mean": sampler.mean_util() if cuda else math.nan,
            "gpu_memory_used_mib_max": sampler.max_memory() if cuda else math.nan,
            "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else math.nan}


#: What a one-model training job does before its model: start Python, import torch and the
#: package's training modules, and create the device's context (a CUDA context on a GPU).
JOB_START_UP = ("import torch, neurobias.jobs, neurobias.packed, neurobias.train; "
                "torch.zeros(1, device={device!r}).add(1).cpu()")


def job_start_up_seconds(device: torch.device, repeats: int = 3) -> float:
    """Median wall time of ``repeats`` fresh interpreters doing :data:`JOB_START_UP` on ``device``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", JOB_START_UP.format(device=str(device))], check=True, env=env,
                       capture_output=True)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def task_data(shared: dict) -> dict:
    """``shared`` as ``train_runs`` takes it (the responses travel in each run's context)."""
    return {k: v for k, v in shared.items() if k != "responses"}


def first_epoch_loss_difference(a: list[PackedRun], b: list[PackedRun]) -> float:
    """The largest |difference| of the same run's first-epoch train_loss between two sides."""
    diffs = []
    for x, y in zip(a, b):
        hx, hy = (pd.read_csv(Path(r.out_dir) / "history.csv").set_index("epoch") for r in (x, y))
        diffs.append(abs(float(hx.loc[1, "train_loss"]) - float(hy.loc[1, "train_loss"])))
    return max(diffs)


def warm_up(net: str, arm: str, alpha: float | None, device: torch.device, training: TrainingConfig,
            image_size: int, tmp: Path) -> None:
    """The net's arm, two models, two steps, one epoch through each engine: CUDA's context,
    cuDNN/cuBLAS handles and oneDNN's primitives for the net's layers are created before its sides
    are timed."""
    shared, target = make_task(2 * training.batch_size, 64, image_size)
    tiny = replace(training, epochs=1)
    for side in SIDES:
        runs = make_runs(net, arm, 2, shared, target, tmp / f"warmup_{side}", alpha)
        with contextlib.redirect_stdout(io.StringIO()):
            train_runs(runs, training=tiny, device=device, progress=False, engine=side, **task_data(shared))
        shutil.rmtree(tmp / f"warmup_{side}")


def benchmark_net(net: str, n_net: int, args, shared: dict, target: np.ndarray, training: TrainingConfig,
                  device: torch.device, precision: str, images: int, tmp: Path,
                  start_up: float) -> tuple[list[dict], bool]:
    """Both sides of one net: its CSV rows, and whether every side trained. A side that raises is
    reported (its traceback printed, its error in the CSV) and not repeated; the other side still runs."""
    model_cfg, _, net_alpha = NETS[net]
    alpha = (net_alpha if args.alpha is None else args.alpha) if args.arm == "similarity" else math.nan
    cuda = device.type == "cuda"
    results: dict[str, dict] = {}
    last_runs: dict[str, list[PackedRun]] = {}
    errors: dict[str, str] = {}
    if not args.no_warmup:
        try:
            warm_up(net, args.arm, args.alpha, device, training, args.image_size, tmp)
        except Exception as error:  # noqa: BLE001  (the timed sides will fail and say why)
            print(f"{net}: warm-up failed ({type(error).__name__}); timing without it", flush=True)
    for repeat in range(args.repeats):
        order = SIDES if (n_net + repeat) % 2 == 0 else SIDES[::-1]  # alternate who goes first
        for side in order:
            if side in errors:
                continue
            runs = make_runs(net, args.arm, args.models, shared, target, tmp / net / side / f"r{repeat}", args.alpha)
            try:
                r = train_side(side, runs, training, device, shared, args.verbose)
            except Exception:  # noqa: BLE001  (reported; the other side and the other nets still run)
                errors[side] = traceback.format_exc()
                print(f"{net}, {side} side FAILED:\n{errors[side]}", flush=True)
                continue
            for line in r["log"].splitlines():
                if line.startswith("stacked engine:") and " need about " in line:
                    print(f"  {net} {line}", flush=True)
            if side not in results or r["seconds"] < results[side]["seconds"]:
                results[side] = r
            if side in last_runs:
                shutil.rmtree(Path(last_runs[side][0].out_dir).parent, ignore_errors=True)
            last_runs[side] = runs
    seconds = {side: results[side]["seconds"] for side in results}
    per_hour = {side: 3600 * args.models / seconds[side] for side in seconds}
    both = not errors
    ratio = seconds["sequential"] / seconds["stacked"] if both else math.nan
    # one job per model: the sequential side's training plus one job start-up per model
    one_job_each = seconds["sequential"] + args.models * start_up if "sequential" in seconds else math.nan
    ratio_one_job = one_job_each / seconds["stacked"] if both else math.nan
    difference = first_epoch_loss_difference(last_runs["sequential"], last_runs["stacked"]) if both else math.nan
    shown = [f"{side} {seconds[side]:.1f} s ({per_hour[side]:.0f} models/h)" if side in seconds else f"{side} FAILED"
             for side in SIDES]
    gpu = ""
    if cuda and results:
        gpu = "; GPU " + ", ".join(f"{side} {r['gpu_util_mean']:.0f}% util, {r['peak_memory_mib']:.0f} MiB peak"
                                   for side, r in results.items())
    print(f"{net} ({model_cfg['architecture']} width {model_cfg['width']}), {args.models} models: " + ", ".join(shown)
          + (f", ratio stacked/sequential {ratio:.2f}x, ratio vs one job per model {ratio_one_job:.2f}x (at least: "
             f"{args.models} start-ups of {start_up:.1f} s added to the sequential side); first-epoch train_loss differs "
             f"by at most {difference:.1e}" if both else "") + gpu, flush=True)
    rows = []
    for side in SIDES:
        r = results.get(side, {})
        rows.append({"benchmark": "stacked_training", "net": net, "architecture": model_cfg["architecture"],
                     "width": model_cfg["width"], "arm": args.arm, "alpha": alpha, "device": str(device),
                     "precision": precision, "side": side, "models": args.models, "epochs": args.epochs,
                     "images": images, "batch_size": args.batch_size, "repeats": args.repeats,
                     "seconds": round(r["seconds"], 3) if r else math.nan,
                     "models_per_hour": round(per_hour[side], 2) if r else math.nan,
                     "gpu_util_mean": round(r.get("gpu_util_mean", math.nan), 1),
                     "peak_memory_mib": round(r.get("peak_memory_mib", math.nan), 1),
                     "gpu_memory_used_mib_max": r.get("gpu_memory_used_mib_max", math.nan),
                     "ratio": round(ratio, 4), "job_start_up_seconds": round(start_up, 3),
                     "one_job_per_model_seconds": round(one_job_each, 3),
                     "ratio_vs_one_job_per_model": round(ratio_one_job, 4),
                     "first_epoch_train_loss_max_diff": difference,
                     "error": errors[side].strip().splitlines()[-1] if side in errors else ""})
    shutil.rmtree(tmp / net, ignore_errors=True)
    return rows, both


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", type=int, default=10, help="N: models per side")
    ap.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--images", type=int, help="training images (default: 2000 on cuda, 512 on cpu)")
    ap.add_argument("--val-images", type=int, help="validation images scored after every epoch (default: images / 4)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--arm", choices=["none", "similarity", "mtl"], default="similarity")
    ap.add_argument("--alpha", type=float, help="the similarity arm's weight (default: 10, CORnet-Z 1)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--repeats", type=int, default=1, help="time both sides this many times; the fastest counts")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="show what the engines print")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stacked_training.csv"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    images = args.images or (2000 if cuda else 512)
    val_images = args.val_images or max(32, images // 4)
    training = training_config(args.epochs, args.batch_size, args.precision)
    precision = resolve_precision(args.precision, device)
    print(f"{args.models} models per side, {args.epochs} epoch(s) of {images} images ({args.image_size} px, batch "
          f"{args.batch_size}, {val_images} validation images), arm {args.arm}, {device}, precision {precision}, "
          f"{torch.get_num_threads()} CPU threads", flush=True)
    if cuda:
        torch.cuda.init()
        print(f"GPU {torch.cuda.get_device_name(device)}; utilisation sampled with "
              f"{GpuSampler(device).method()} every 0.5 s", flush=True)
    else:
        print("on a CPU: GPU utilisation and memory are not measured", flush=True)
    start_up = job_start_up_seconds(device)
    print(f"a one-model job's start-up (Python, torch, the package, the {device.type} context): {start_up:.2f} s",
          flush=True)
    shared, target = make_task(images, val_images, args.image_size)
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="neurobias-stacked-") as tmp:
        tmp = Path(tmp)
        for n_net, net in enumerate(args.nets):
            net_rows, ok = benchmark_net(net, n_net, args, shared, target, training, device, precision, images, tmp,
                                         start_up)
            rows += net_rows
            if not ok:
                failures.append(net)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"written {out}")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
