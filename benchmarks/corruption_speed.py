"""ImageNet-C corruption speed: ``neurobias.robustness.corruptions`` (batched torch) against the
reference imagecorruptions 1.1.2 (numpy/scipy/OpenCV/PIL per image), side by side in one run.

    .venv/bin/python benchmarks/corruption_speed.py [--images 1000] [--threads 2] [--device cpu]

Data: the embedded synthetic task's test images at 64x64 (``make_synthetic_task``, uint8 RGB), the
same N images for both implementations. All 15 corruptions x 5 severities by default.

  ours       ``corrupt(images, name, severity, seed)`` on the whole batch: torch with --threads
             (chunks of the batch on that many worker threads, one intra-op thread each), on
             --device (cuda: images and results stay on the GPU; timed with synchronisation).
  torch form the same ``corrupt`` with the compiled CPU kernels off (``corruptions.CPU_KERNELS =
             False``): the batched torch implementation that GPUs run, on the CPU (CPU runs only;
             --no-torch-form leaves it out). Same draws: identical output except glass blur.
  reference  ``imagecorruptions.corrupt`` (through ``neurobias.robustness.reference_corruptions``)
             image by image in a multiprocessing Pool of --threads processes (one OpenCV/BLAS
             thread each), the images split into 4 x --threads tasks.

Each (corruption, severity) is timed for ours, the torch form and then the reference, back to
back, --repeats times (default 3); each side's fastest repeat is the measurement (the same rule for both, as
``timeit`` does: the minimum is the run least disturbed by other activity). One-time
set-up is excluded on both sides: the pool is started and warmed up first, and ours runs once on
16 images per corruption and severity before timing (tables, frost textures, zoom operators,
loading or compiling the CPU kernels: ~15 s in all on a new checkout, then cached). On Linux the CPU
time other processes used during each measurement is recorded (/proc/stat minus this process and
its pool) in ``foreign_cores``: numbers taken while other jobs run are not meaningful.

Output: a table per corruption, the overall ratio (sum of reference seconds / sum of ours), and a
tidy CSV (--out, default benchmarks/results/corruption_speed.csv) with one row per corruption,
severity and implementation (seconds: the fastest repeat, all_seconds: every repeat, images_per_s,
ratio = reference seconds / that implementation's seconds for that corruption and severity), plus rows with severity 'all' (sum over severities) and
corruption 'all'.

Target: ours >= 50x the reference overall on 2 CPU cores with 1000 images.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neurobias.data.synthetic import make_synthetic_task  # noqa: E402
from neurobias.robustness import corruptions as corruptions_module  # noqa: E402
from neurobias.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt  # noqa: E402
from machine_load import busy_seconds  # noqa: E402  (benchmarks/ is on sys.path: the script's folder)


def process_seconds(pids) -> float:
    """CPU seconds (user + system) used so far by the given processes (Linux), 0 elsewhere."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


# ---- reference side (runs in the pool's worker processes)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)
    import neurobias.robustness.reference_corruptions  # noqa: F401  (import once, outside the timing)


def _reference_task(args) -> np.ndarray:
    from neurobias.robustness.reference_corruptions import reference_corrupt

    images_hwc, name, severity, seed = args
    np.random.seed(seed)
    return np.stack([reference_corrupt(im, name, severity) for im in images_hwc])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="number of 64x64 RGB images (default 1000)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for ours, processes for the reference")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda, for ours")
    ap.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS), choices=list(CORRUPTIONS))
    ap.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES), choices=list(SEVERITIES))
    ap.add_argument("--size", type=int, default=64, help="image side (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timings per side and condition; the fastest counts")
    ap.add_argument("--no-torch-form", action="store_true",
                    help="do not also time the torch form of ours with the CPU kernels off (CPU only)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "corruption_speed.csv"))
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    torch.set_num_threads(args.threads)
    images = make_synthetic_task(args.seed, 0, 0, args.images, image_size=args.size)["test"][0]  # uint8 [N,3,H,W]
    ours_images = torch.from_numpy(images).to(device)
    hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    tasks = 4 * args.threads
    parts = np.array_split(hwc, tasks)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # the pool's processes: one thread each
    ctx = mp.get_context("spawn")
    print(f"{args.images} images {args.size}x{args.size} RGB (synthetic task), ours: torch {torch.__version__} on "
          f"{device} with {args.threads} threads; reference: imagecorruptions 1.1.2 in a Pool of {args.threads} "
          f"processes, {tasks} tasks per call", flush=True)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    started = time.time()
    rows = []
    # ours: the CPU kernels where a corruption has one (the default on the CPU); torch_form: the
    # batched torch implementation (the GPU's) on the same device, side by side (CPU only)
    implementations = ["ours"] + (["torch_form"] if device.type == "cpu" and not args.no_torch_form else []) + ["reference"]
    with ctx.Pool(args.threads, initializer=_worker_init) as pool:
        pids = [p.pid for p in pool._pool]
        pool.map(_reference_task, [(parts[0][:2], "contrast", 1, 0)] * args.threads)  # warm-up
        for name in args.corruptions:
            for severity in args.severities:  # one-time set-up (tables, textures, operators), not timed
                corrupt(ours_images[:16], name, severity, 0)
            for severity in args.severities:
                jobs = [(part, name, severity, args.seed * 1000 + i) for i, part in enumerate(parts)]
                runs = {impl: [] for impl in implementations}  # (seconds, foreign cores) per repeat
                for _ in range(args.repeats):
                    for impl in implementations:
                        if impl == "reference":
                            b0, p0, t0 = busy_seconds(), process_seconds(pids) + time.process_time(), time.perf_counter()
                            pool.map(_reference_task, jobs, chunksize=1)
                            secs = time.perf_counter() - t0
                            b1, p1 = busy_seconds(), process_seconds(pids) + time.process_time()
                            runs[impl].append((secs, None if b0 is None else max(0.0, ((b1 - b0) - (p1 - p0)) / secs)))
                            continue
                        corruptions_module.CPU_KERNELS = impl == "ours"
                        sync()
                        b0, o0, t0 = busy_seconds(), time.process_time(), time.perf_counter()
                        corrupt(ours_images, name, severity, args.seed)
                        sync()
                        secs = time.perf_counter() - t0
                        b1, o1 = busy_seconds(), time.process_time()
                        runs[impl].append((secs, None if b0 is None else max(0.0, ((b1 - b0) - (o1 - o0)) / secs)))
                corruptions_module.CPU_KERNELS = True
                best = {impl: min(r) for impl, r in runs.items()}
                ref_s = best["reference"][0]
                for impl in implementations:
                    secs, foreign = best[impl]
                    rows.append({"corruption": name, "severity": str(severity), "implementation": impl,
                                 "images": args.images, "seconds": secs, "images_per_s": args.images / secs,
                                 "ratio": ref_s / secs, "foreign_cores": foreign,
                                 "device": "cpu" if impl == "reference" else str(device), "threads": args.threads,
                                 "repeats": args.repeats, "all_seconds": " ".join(f"{r[0]:.4f}" for r in runs[impl])})
                ours_s = best["ours"][0]
                torch_note = (f"  torch form {best['torch_form'][0]:7.3f} s ({best['torch_form'][0] / ours_s:.2f}x ours)"
                              if "torch_form" in best else "")
                foreign = [best[impl][1] for impl in implementations]
                print(f"{name:18s} s{severity}  ours {ours_s:7.3f} s  reference {ref_s:7.2f} s  ratio {ref_s / ours_s:7.1f}"
                      + torch_note + (f"  (other processes: {' / '.join(f'{f:.2f}' for f in foreign)} cores)"
                                      if foreign[0] is not None else ""), flush=True)

    df = pd.DataFrame(rows)
    summary = []
    for name, group in [(n, df[df.corruption == n]) for n in args.corruptions] + [("all", df)]:
        ref_s = group[group.implementation == "reference"].seconds.sum()
        n_images = args.images * len(group) // len(implementations)
        for impl in implementations:
            secs = group[group.implementation == impl].seconds.sum()
            summary.append({"corruption": name, "severity": "all", "implementation": impl, "images": n_images,
                            "seconds": secs, "images_per_s": n_images / secs, "ratio": ref_s / secs,
                            "foreign_cores": group[group.implementation == impl].foreign_cores.max(),
                            "device": "cpu" if impl == "reference" else str(device), "threads": args.threads,
                            "repeats": args.repeats, "all_seconds": ""})
    df = pd.concat([df, pd.DataFrame(summary)], ignore_index=True)

    def total(name, impl):
        return next(s["seconds"] for s in summary if s["corruption"] == name and s["implementation"] == impl)

    table = pd.DataFrame([{"corruption": r["corruption"], "ours s": round(r["seconds"], 3),
                           **({"torch form s": round(total(r["corruption"], "torch_form"), 3)}
                              if "torch_form" in implementations else {}),
                           "reference s": round(total(r["corruption"], "reference"), 2),
                           "ratio": round(r["ratio"], 1)}
                          for r in summary if r["implementation"] == "ours"])
    print()
    print(table.to_string(index=False))
    overall = next(s for s in summary if s["corruption"] == "all" and s["implementation"] == "ours")
    worst = df.foreign_cores.max()
    print(f"\nOVERALL: ours {overall['seconds']:.2f} s, reference {total('all', 'reference'):.1f} s "
          f"for {args.images} images x {len(args.corruptions)} corruptions x {len(args.severities)} severities: "
          f"ratio {overall['ratio']:.1f} (target >= 50 on 2 CPU cores)")
    if "torch_form" in implementations:
        torch_s = total("all", "torch_form")
        print(f"torch form (CPU kernels off): {torch_s:.2f} s, ratio {total('all', 'reference') / torch_s:.1f}; "
              f"the kernels make ours {torch_s / overall['seconds']:.2f}x faster")
    if worst is not None and worst == worst and worst > 0.25:
        print(f"WARNING: other processes used up to {worst:.2f} CPU cores during some measurements; "
              "run again on a quiet machine for reliable numbers")
    print(f"total {time.time() - started:.0f} s; load average {load_before} before, "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} after")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"written {out}")


if __name__ == "__main__":
    main()
