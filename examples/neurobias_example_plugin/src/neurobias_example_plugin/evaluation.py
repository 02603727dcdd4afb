"""The ``salt_pepper`` evaluation: accuracy when a fraction of the pixels is set to black or white."""

from __future__ import annotations

import torch


def salt_pepper(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Images in [0, 1] [N, C, H, W]: each pixel (all channels together) replaced, with probability
    ``fraction``, by 0 or 1 (equally likely)."""
    n, _, h, w = images.shape
    hit = torch.rand((n, 1, h, w), generator=generator) < fraction
    value = (torch.rand((n, 1, h, w), generator=generator) < 0.5).to(images.dtype)
    return torch.where(hit, value, images)


def salt_pepper_accuracy(models: list, images: torch.Tensor, labels: torch.Tensor, cfg: dict, device: str,
                         progress: bool = False) -> list[list[dict]]:
    """One list of records per model: accuracy at each fraction, the same noisy images for every
    model (one generator seeded by ``cfg['seed']``, drawn once)."""
    n = cfg.get("n_images") or len(images)
    x01, y = images[:n].float() / 255, labels[:n]
    generator = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    records = [[] for _ in models]
    for fraction in cfg["fractions"]:
        noisy = salt_pepper(x01, float(fraction), generator)
        with torch.no_grad():
            for k, model in enumerate(models):
                predicted = torch.cat([model(noisy[i:i + 100].to(device)).argmax(1).cpu() for i in range(0, n, 100)])
                records[k].append({"condition": "salt_pepper", "level": float(fraction), "metric": "accuracy",
                                   "value": float((predicted == y).float().mean())})
    return records
