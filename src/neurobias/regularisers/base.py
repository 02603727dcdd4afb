"""The interface every regulariser implements (see :mod:`neurobias.regularisers`)."""

from __future__ import annotations

import torch
from torch import nn


class Regulariser(nn.Module):
    """Defaults: active on every step, total loss = CE + weight * penalty, nothing extra logged."""

    taps: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    def active(self, epoch: int, step: int) -> bool:
        """Whether this step adds the penalty (inactive steps skip the stimulus forward pass)."""
        return True

    def stimulus_batches(self, epoch: int, step: int) -> int:
        """How many stimulus batches this step's penalty sums over (0: cross-entropy alone)."""
        return int(self.active(epoch, step))

    def stimulus_batch(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, features: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def total_loss(self, ce: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        """``penalty`` is None on a step without stimulus batches."""
        return ce if penalty is None else ce + self.weight * penalty

    def log(self) -> dict[str, float]:
        return {}
