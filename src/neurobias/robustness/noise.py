"""Accuracy under additive Gaussian pixel noise (Li et al. 2019, Fig. 4).

Images in [0, 1] get i.i.d. N(0, sigma^2) noise per pixel and channel and are clipped back to
[0, 1] (a displayable image, as in the paper's examples). The noise is drawn from a generator
seeded by ``(seed, level)``, so every model of a study sees exactly the same noisy images: the
comparison between arms is paired, and the only difference left is the model.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..models import CPU_EVAL_BATCH_SIZE, inference_layout


def add_gaussian_noise(x01: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x01.shape, generator=generator).to(x01.device)
    return (x01 + sigma * noise).clamp_(0.0, 1.0)


@torch.no_grad()
def gaussian_noise_accuracies(models, images: torch.Tensor, labels: torch.Tensor, levels, seed: int,
                              device="cpu", batch_size: int = 500, progress: bool = True,
                              score_batch_size: int | None = None) -> list[list[dict]]:
    """For each model, [{"level": sigma, "accuracy": a, "n": N}, ...] on uint8 images [N,C,H,W].

    Each noisy batch of ``batch_size`` images is drawn once (the noise depends on it) and scored by
    every model (the seeds of one arm in one job) ``score_batch_size`` images at a time (the logits
    do not depend on it; default: :data:`~neurobias.models.CPU_EVAL_BATCH_SIZE` on a CPU, ``batch_size``
    elsewhere: a GPU scores each noisy batch whole)."""
    if score_batch_size is None:
        score_batch_size = CPU_EVAL_BATCH_SIZE if torch.device(device).type == "cpu" else batch_size
    for model in models:
        model.eval()
    out = [[] for _ in models]
    for level in tqdm(levels, desc="noise levels", disable=not progress):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, int(round(level * 1e6))]).generate_state(1)[0]))
        correct = [0] * len(models)
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].float() / 255.0
            x = inference_layout((add_gaussian_noise(x, float(level), g) if level > 0 else x).to(device))
            y = labels[i:i + batch_size]
            for m, model in enumerate(models):
                for j in range(0, len(x), score_batch_size):
                    predicted = model(x[j:j + score_batch_size]).argmax(1).cpu()
                    correct[m] += int((predicted == y[j:j + score_batch_size]).sum())
        for m in range(len(models)):
            out[m].append({"level": float(level), "accuracy": correct[m] / len(images), "n": len(images)})
    return out


def gaussian_noise_accuracy(model, images: torch.Tensor, labels: torch.Tensor, levels, seed: int,
                            device="cpu", batch_size: int = 500, progress: bool = True) -> list[dict]:
    """[{"level": sigma, "accuracy": a, "n": N}, ...] for one model (see gaussian_noise_accuracies)."""
    return gaussian_noise_accuracies([model], images, labels, levels, seed, device, batch_size, progress)[0]
