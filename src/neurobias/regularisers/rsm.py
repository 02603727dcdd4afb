"""Federer et al. 2020's RSM teacher: pull one layer's RSM toward a V1 RSM.

For a batch of B stimulus images (the recording's training tier), the layer's RSM
(:func:`neurobias.neural.rsm.feature_rsm`) is compared with the teacher RSM on the same images
over the B(B-1)/2 pairs i<j (the diagonal is always 1 and carries nothing):

    cost_V = mean_{i<j} |RSM^net_ij - RSM^V1_ij|        (cost "l1": the released code's
                                                         absolute difference; "mse": squared)

Weighting (``weighting``):

- ``ratio`` (the released code, ``run_cornetZ_ratio.py``): L = CE + lambda * cost_V with
  lambda = r * CE / cost_V recomputed at every step from the current values and held constant in
  the gradient. The neural term is then always worth r times the cross-entropy, whatever the
  scale of the cost; cross-entropy itself is not scaled by (1 - r).
- ``fixed``: L = CE + r * cost_V.

``alternate``: the released code alternates steps of cross-entropy alone with steps of the total
loss (``which_train``); ``until_epoch``: the neural term is switched off from that epoch on
(``n_e_v``). Both default to the released code's behaviour (alternate; on for every epoch).
"""

from __future__ import annotations

import numpy as np
import torch

from ..neural.rsm import feature_rsm
from .base import Regulariser

COSTS = ("l1", "mse")
WEIGHTINGS = ("ratio", "fixed")


def rsm_cost(rsm_net: torch.Tensor, rsm_target: torch.Tensor, cost: str = "l1") -> torch.Tensor:
    """Mean over the pairs i<j of |difference| (l1) or difference^2 (mse)."""
    iu = torch.triu_indices(len(rsm_net), len(rsm_net), offset=1, device=rsm_net.device)
    diff = rsm_net[iu[0], iu[1]] - rsm_target[iu[0], iu[1]]
    if cost == "l1":
        return diff.abs().mean()
    if cost == "mse":
        return (diff ** 2).mean()
    raise ValueError(f"rsm regulariser: unknown cost {cost!r}; expected one of {COSTS}")


class RSMRegulariser(Regulariser):
    def __init__(self, target: np.ndarray, train_rows: np.ndarray, layer: str, r: float, *,
                 metric: str = "cosine", cost: str = "l1", weighting: str = "ratio",
                 alternate: bool = True, until_epoch: int | None = None, stimulus_batch_size: int = 10):
        super().__init__(weight=r)
        if cost not in COSTS:
            raise ValueError(f"rsm regulariser: unknown cost {cost!r}; expected one of {COSTS}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"rsm regulariser: unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
        self.taps = (layer,)
        self.metric, self.cost, self.weighting = metric, cost, weighting
        self.alternate, self.until_epoch = alternate, until_epoch
        self.register_buffer("target", torch.as_tensor(target, dtype=torch.float32), persistent=False)
        self.register_buffer("train_rows", torch.as_tensor(train_rows, dtype=torch.long), persistent=False)
        self.batch_size = min(stimulus_batch_size, len(train_rows))

    def active(self, epoch: int, step: int) -> bool:
        if self.until_epoch is not None and epoch >= self.until_epoch:
            return False
        return step % 2 == 1 if self.alternate else True

    def stimulus_batch(self, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randperm(len(self.train_rows), generator=generator)[: self.batch_size]
        return self.train_rows[pick.to(self.train_rows.device)]

    def loss(self, features: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        return rsm_cost(feature_rsm(features[self.taps[0]], self.metric), self.target[rows][:, rows], self.cost)

    def total_loss(self, ce: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        if penalty is None:
            return ce
        if self.weighting == "fixed":
            return ce + self.weight * penalty
        lam = self.weight * ce.detach() / penalty.detach().clamp_min(1e-8)
        return ce + lam * penalty


def build(arm: dict, target, train_rows, context: dict) -> RSMRegulariser:
    """The ``rsm`` kind's builder (declared in :mod:`neurobias.regularisers`); ``context["rsm_metric"]``:
    the study's ``similarity.rsm_metric``."""
    from ..config import schema_default
    return RSMRegulariser(target, train_rows, arm["layer"], float(arm["r"]),
                          metric=context.get("rsm_metric") or schema_default("study", "similarity", "rsm_metric"),
                          cost=arm["cost"], weighting=arm["weighting"], alternate=arm["alternate"],
                          until_epoch=arm.get("until_epoch"), stimulus_batch_size=arm["stimulus_batch_size"])
