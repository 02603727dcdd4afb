"""Scoring speed by images per forward pass: a CPU's evaluation batch
(``neurobias.models.CPU_EVAL_BATCH_SIZE``, which ``training.eval_batch_size: auto`` and the noise and
brain-likeness jobs use on a CPU) against 512 per pass, side by side in one run, for the default
config's three networks, with whether the logits are the same.

    .venv/bin/python benchmarks/evaluation_batch.py [--images 500 2000] [--rounds 5] [--threads 1]

Networks (random weights: the time does not depend on them), in eval mode and channels_last, as
evaluation runs them: the demo's ResNet-18 (CIFAR stem, width 8, 3 channels), federer_demo's
CORnet-Z (width 16, 3 channels), safarani_demo's VGG-11 with BatchNorm (width 8, 1 channel). Images:
uniform random uint8, 32 x 32, scored through ``neurobias.train.predict`` (the function every
per-epoch evaluation calls). Each round times every (network, image count, batch) once, in a
rotated order; a time is the median over the rounds, the ratio that of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neurobias.models import CPU_EVAL_BATCH_SIZE, build_classifier, to_inference_layout  # noqa: E402
from neurobias.train import predict  # noqa: E402

LARGE_BATCH = 512
NETWORKS = {  # name: (architecture, channels, options)
    "resnet18_w8": ("resnet18", 3, {"width": 8}),
    "cornet_z_w16": ("cornet_z", 3, {"width": 16}),
    "vgg11_bn_w8": ("vgg11", 1, {"width": 8, "batch_norm": True}),
}


def network(name: str) -> tuple[torch.nn.Module, int]:
    architecture, channels, options = NETWORKS[name]
    torch.manual_seed(0)
    model = build_classifier(architecture, 10, channels, [0.5] * channels, [0.25] * channels, **options)
    return to_inference_layout([model])[0], channels


def measure(names: list[str], image_counts: list[int], rounds: int, small: int) -> pd.DataFrame:
    models = {name: network(name) for name in names}
    images = {(name, n): torch.randint(0, 256, (n, models[name][1], 32, 32), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(n))
              for name in names for n in image_counts}
    cases = [(name, n, batch) for name in names for n in image_counts for batch in (LARGE_BATCH, small)]
    seconds: dict[tuple, list[float]] = {case: [] for case in cases}
    logits: dict[tuple, torch.Tensor] = {}
    for case in cases:  # warm-up, and the logits to compare
        name, n, batch = case
        logits[case] = predict(models[name][0], images[name, n], batch, "cpu")
    for r in range(rounds):
        for case in cases[r % len(cases):] + cases[:r % len(cases)]:
            name, n, batch = case
            started = time.perf_counter()
            predict(models[name][0], images[name, n], batch, "cpu")
            seconds[case].append(time.perf_counter() - started)
    rows = []
    for name in names:
        for n in image_counts:
            large, few = (statistics.median(seconds[name, n, b]) for b in (LARGE_BATCH, small))
            rows.append({"network": name, "images": n, "batch": small, "seconds": few,
                         "seconds_batch_512": large, "speedup": large / few,
                         "same_logits": bool(torch.equal(logits[name, n, LARGE_BATCH], logits[name, n, small]))})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--images", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--batch", type=int, default=CPU_EVAL_BATCH_SIZE, help="the small batch (default: the CPU's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="1: as a job of the default run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "evaluation_batch.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frame = measure(args.networks, args.images, args.rounds, args.batch)
    print(f"CPU, {args.threads} thread(s), {args.rounds} rounds, torch {torch.__version__}; "
          f"{args.batch} images per pass against {LARGE_BATCH}:")
    for r in frame.itertuples():
        print(f"  {r.network:13s} {r.images:5d} images: {r.seconds:.3f} s against {r.seconds_batch_512:.3f} s, "
              f"{r.speedup:.2f}x; logits {'identical' if r.same_logits else 'DIFFERENT'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
