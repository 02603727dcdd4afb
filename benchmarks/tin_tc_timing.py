"""Time to generate the full TIN-TC and score one VGG-19 on it (Safarani et al. 2021's evaluation):
the Tiny ImageNet validation set's 10 000 grey 64x64 images under the 14 TIN-TC corruptions x 5
severities (700 000 corrupted images) plus the clean set, on one device.

    .venv/bin/python benchmarks/tin_tc_timing.py [--device cuda] [--images 10000] [--batch-size 500]

It runs what the pipeline's ``evaluate_corruptions`` job runs for one model:
``neurobias.robustness.corruption_accuracy.corruption_accuracy`` (corrupt each batch on the
device with ``corrupt``, score it, keep per-image correctness), so the total is the evaluation
time a user of ``safarani2021`` pays per model. A second pass times the corruptions alone, per
corruption and severity (the batches are made and dropped, with device synchronisation), to show
where the time goes.

Data: the embedded synthetic task's images at 64x64 (``make_synthetic_task``), converted to grey
with PIL's luma, and random labels over 200 classes (timing does not depend on content). Model:
the study's VGG-19 with batch norm (``build_classifier('vgg19', 200, 1, ...)``), randomly
initialised, in eval mode. One-time set-up (CUDA context, cuDNN autotuning, corruption tables and
textures) is excluded: one clean batch and one batch per corruption and severity run first.

Output: the totals, a table per corruption, and a tidy CSV (--out, default
benchmarks/results/tin_tc_timing.csv): one row per (phase, corruption, severity) with seconds,
images and images/s; phase 'generate' (corruptions alone) or 'evaluate' (the whole evaluation,
corruption 'all').

Target (issue 6): report the GPU time; no threshold is set.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neurobias.data.synthetic import make_synthetic_task  # noqa: E402
from neurobias.models import build_classifier  # noqa: E402
from neurobias.robustness.corruption_accuracy import corrupted_batch, corruption_accuracy  # noqa: E402
from neurobias.robustness.corruptions import SEVERITIES, TIN_TC, luma  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=10000, help="validation images (default 10 000, TIN's size)")
    ap.add_argument("--batch-size", type=int, default=500, help="as the pipeline's evaluations.corruptions.batch_size")
    ap.add_argument("--corruptions", nargs="+", default=list(TIN_TC), choices=list(TIN_TC) + ["glass_blur"])
    ap.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES), choices=list(SEVERITIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU runs); default: torch's")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tin_tc_timing.csv"))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    if args.threads:
        torch.set_num_threads(args.threads)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rgb = torch.from_numpy(make_synthetic_task(args.seed, 0, 0, args.images, image_size=64)["test"][0])
    images = luma(rgb)  # uint8 [N, 1, 64, 64]
    labels = torch.randint(0, 200, (args.images,), generator=torch.Generator().manual_seed(args.seed))
    torch.manual_seed(args.seed)
    model = build_classifier("vgg19", 200, 1, [0.5], [0.25]).to(device).eval()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.images} grey 64x64 images x {len(args.corruptions)} corruptions x {len(args.severities)} "
          f"severities + clean, batch {args.batch_size}, VGG-19 (batch norm), on {device} ({name}), "
          f"torch {torch.__version__}", flush=True)

    # one-time set-up, not timed: the first batch of every condition, and the model on a clean batch
    first = images[:args.batch_size]
    for corruption in args.corruptions:
        for severity in args.severities:
            corrupted_batch(first.to(device), args.corruptions, corruption, severity, args.seed, 0)
    with torch.no_grad():
        model(first.to(device).float() / 255)
    sync()

    rows = []
    for corruption in args.corruptions:  # corruptions alone, per condition
        for severity in args.severities:
            sync()
            t0 = time.perf_counter()
            for start in range(0, args.images, args.batch_size):
                x = images[start:start + args.batch_size].to(device)
                corrupted_batch(x, args.corruptions, corruption, severity, args.seed, start)
            sync()
            seconds = time.perf_counter() - t0
            rows.append({"phase": "generate", "corruption": corruption, "severity": severity,
                         "seconds": seconds, "images": args.images})

    sync()
    t0 = time.perf_counter()
    records, correct, conditions = corruption_accuracy([model], images, labels, args.corruptions, args.severities,
                                                       args.seed, args.batch_size, device)
    sync()
    total = time.perf_counter() - t0
    n_conditions = len(conditions)  # clean + corruptions x severities
    rows.append({"phase": "evaluate", "corruption": "all", "severity": "all", "seconds": total,
                 "images": args.images * n_conditions})
    df = pd.DataFrame(rows)
    df["images_per_s"] = df.images / df.seconds
    df["device"] = str(device)
    df["device_name"] = name

    generate = df[df.phase == "generate"]
    table = generate.groupby("corruption", sort=False).seconds.sum().round(3)
    print()
    print(table.to_string())
    print(f"\ncorruptions alone: {generate.seconds.sum():.2f} s for {args.images * len(generate)} corrupted images "
          f"({args.images * len(generate) / generate.seconds.sum():.0f} images/s)")
    print(f"TOTAL (generation + evaluation of one VGG-19, {n_conditions} conditions x {args.images} images): "
          f"{total:.1f} s = {total / 60:.2f} min; clean accuracy {records[0][0]['accuracy']:.3f} (random model)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"written {out}")


if __name__ == "__main__":
    main()
