"""Corrupted training labels (Federer et al. 2020; Zhang et al. 2017's randomisation test).

A fraction f of the training labels is replaced by a different label drawn uniformly from the
other C - 1 classes, so exactly round(f * N) labels are wrong. The images to corrupt come from one
permutation per seed (the first round(f * N) of it), so every arm of a seed sees the same
corruption, and the corrupted sets are nested across fractions. Validation and test labels are
never touched.
"""

from __future__ import annotations

import numpy as np
import torch


def corrupt_labels(labels: torch.Tensor, fraction: float, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted labels, boolean mask of the corrupted images)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise: fraction must lie in [0, 1], got {fraction}")
    if n_classes < 2 and fraction > 0:
        raise ValueError("label_noise: needs at least two classes")
    n = len(labels)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    order = rng.permutation(n)
    shift = rng.integers(1, max(n_classes, 2), size=n)  # drawn for all images: nested across fractions
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:int(round(fraction * n))]] = True
    y = labels.numpy().copy()
    y[chosen] = (y[chosen] + shift[chosen]) % n_classes
    return torch.as_tensor(y, dtype=labels.dtype), torch.as_tensor(chosen)
