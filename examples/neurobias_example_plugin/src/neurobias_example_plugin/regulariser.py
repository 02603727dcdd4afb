"""The ``similarity_mse`` regulariser: one layer's image similarities pulled toward a neural target."""

from __future__ import annotations

import torch
from torch import nn

from neurobias.neural.similarity import feature_similarity
from neurobias.regularisers import Regulariser


class SimilarityMSE(Regulariser):
    """loss = mean over pairs i < j of (S^CNN_ij - S^target_ij)^2, at one layer, on a random batch of
    the recording's training stimuli; total = CE + mse_weight * loss (the interface's default)."""

    def __init__(self, target, train_rows, layer: str, stimulus_batch_size: int, weight: float):
        super().__init__(weight=weight)
        self.taps = (layer,)
        self.register_buffer("target", torch.as_tensor(target, dtype=torch.float32), persistent=False)
        self.register_buffer("train_rows", torch.as_tensor(train_rows, dtype=torch.long), persistent=False)
        self.batch_size = min(int(stimulus_batch_size), len(train_rows))
        self.last = nn.Parameter(torch.zeros(()), requires_grad=False)  # the last batch's loss, for the history

    def stimulus_batch(self, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randperm(len(self.train_rows), generator=generator)[: self.batch_size]
        return self.train_rows[pick.to(self.train_rows.device)]

    def loss(self, features: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        s = feature_similarity(features[self.taps[0]])
        iu = torch.triu_indices(len(rows), len(rows), offset=1, device=s.device)
        value = ((s[iu[0], iu[1]] - self.target[rows][:, rows][iu[0], iu[1]]) ** 2).mean()
        self.last.data = value.detach().float()
        return value

    def log(self) -> dict[str, float]:
        return {"similarity_mse": float(self.last)}


def build(arm: dict, target, train_rows, context: dict) -> SimilarityMSE:
    return SimilarityMSE(target, train_rows, arm["layer"], arm["stimulus_batch_size"], float(arm["mse_weight"]))
