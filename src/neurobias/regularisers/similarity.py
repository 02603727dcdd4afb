"""Li et al. 2019's similarity regulariser.

For a batch of B stimulus images (sampled from the recording's training tier), every selected
layer l gives a CNN similarity matrix S^l (:func:`neurobias.neural.similarity.feature_similarity`:
each unit z-scored over the batch, as each neuron is for S^neural, then the cosine between images);
the layers combine with trainable weights gamma = softmax(w), w initialised at 0:

    S^CNN_ij = sum_l gamma_l S^l_ij                                   (Li 2019, Eq. 10)
    L_sim    = mean_{i<j} ( arctanh S^CNN_ij - arctanh S^neural_ij )^2  (Li 2019, Eq. 6)
    L        = L_CE + alpha * L_sim

arctanh stretches similarities near +-1, where the cosine saturates, as the paper does; values are
clamped to +-(1 - 1e-4) first so the transform stays finite.

The stimulus batch runs through the network in training mode, a separate forward pass that stops
at the last selected layer; by default (``neural_batchnorm: update``) it updates BatchNorm's running
statistics like any training-mode pass (Li et al. run stimulus pairs through the classifier's own
core, Fig. 3, with nothing that sets BatchNorm aside); ``freeze`` leaves them to the
classification batches (:class:`neurobias.train.EpochStep`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..neural.similarity import feature_similarity
from .base import Regulariser

_CLAMP = 1 - 1e-4


def similarity_loss(s_cnn: torch.Tensor, s_target: torch.Tensor) -> torch.Tensor:
    """Mean over the off-diagonal pairs i<j of (arctanh S^CNN - arctanh S^target)^2."""
    iu = torch.triu_indices(len(s_cnn), len(s_cnn), offset=1, device=s_cnn.device)
    a = torch.atanh(s_cnn[iu[0], iu[1]].clamp(-_CLAMP, _CLAMP))
    b = torch.atanh(s_target[iu[0], iu[1]].clamp(-_CLAMP, _CLAMP))
    return ((a - b) ** 2).mean()


class SimilarityRegulariser(Regulariser):
    def __init__(self, target: np.ndarray, train_rows: np.ndarray, taps: tuple[str, ...],
                 stimulus_batch_size: int = 32, alpha: float = 1.0):
        super().__init__(weight=alpha)
        if len(taps) == 0:
            raise ValueError("similarity regulariser: 'layers' must name at least one layer")
        self.taps = tuple(taps)
        self.layer_logits = nn.Parameter(torch.zeros(len(taps)))
        self.register_buffer("target", torch.as_tensor(target, dtype=torch.float32), persistent=False)
        self.register_buffer("train_rows", torch.as_tensor(train_rows, dtype=torch.long), persistent=False)
        self.batch_size = min(stimulus_batch_size, len(train_rows))

    @property
    def gamma(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def stimulus_batch(self, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randperm(len(self.train_rows), generator=generator)[: self.batch_size]
        return self.train_rows[pick.to(self.train_rows.device)]

    def combined_similarity(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        g = self.gamma
        return sum(g[i] * feature_similarity(features[t]) for i, t in enumerate(self.taps))

    def loss(self, features: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        s_target = self.target[rows][:, rows]
        return similarity_loss(self.combined_similarity(features), s_target)

    def log(self) -> dict[str, float]:
        return {f"gamma_{t}": float(v) for t, v in zip(self.taps, self.gamma.detach().cpu())}


def build(arm: dict, target, train_rows, context: dict) -> SimilarityRegulariser:
    """The ``similarity`` kind's builder (declared in :mod:`neurobias.regularisers`)."""
    return SimilarityRegulariser(target, train_rows, tuple(arm["layers"]), arm["stimulus_batch_size"],
                                 alpha=float(arm["alpha"]))
