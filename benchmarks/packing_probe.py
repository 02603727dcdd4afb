"""Does stacking models pay on this device? One training step of N demo networks, timed side by
side: N separate models one after another, and the same N models stacked with
``torch.func.stack_module_state`` + ``vmap`` (one call computes every model's gradients).

    .venv/bin/python benchmarks/packing_probe.py [--models 5 10] [--device cpu] [--repeats 5]

A probe for the packed-training issue (many models in one process): it measures only the step
itself, not process start-up. Prints the fastest of ``--repeats`` per side and the ratio
sequential / stacked (> 1: stacking is faster).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from neurobias.models import build_classifier


def probe(n_models: int, device: str, repeats: int, batch: int = 64, size: int = 32) -> dict:
    models = []
    for seed in range(n_models):
        torch.manual_seed(seed)
        models.append(build_classifier("resnet18", 10, 3, torch.zeros(3), torch.ones(3), width=8).to(device))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_models, batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (n_models, batch), generator=g).to(device)

    def sequential():
        for i, model in enumerate(models):
            model.train()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()

    skeleton = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)

    def loss(p, b, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(skeleton, (p, b), (xi,)), yi)

    step = vmap(grad_and_value(loss), randomness="different")

    def stacked():
        step(params, buffers, x, y)

    times = {"sequential": [], "stacked": []}
    for run in (sequential, stacked):  # warm-up
        run()
    for _ in range(repeats):
        for name, run in (("sequential", sequential), ("stacked", stacked)):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in times.items()}
    # the two sides compute the same thing: each model's loss on its own batch
    with torch.no_grad():
        alone = torch.stack([torch.nn.functional.cross_entropy(m(x[i]), y[i]) for i, m in enumerate(models)])
        together = step(params, buffers, x, y)[1]
    return {"models": n_models, **best, "ratio": best["sequential"] / best["stacked"],
            "max_loss_difference": float((alone - together).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for n in args.models:
        r = probe(n, args.device, args.repeats)
        print(f"{r['models']} models, one step each: sequential {r['sequential']:.3f} s, stacked (vmap) "
              f"{r['stacked']:.3f} s, ratio {r['ratio']:.2f}x (losses agree to {r['max_loss_difference']:.1e})",
              flush=True)


if __name__ == "__main__":
    main()
