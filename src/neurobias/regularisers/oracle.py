"""Safarani et al. 2021's oracle network: a core that has seen the test corruptions.

Two stages in one training run (one checkpoint per epoch, so a killed job resumes in either):

1. ``pretrain_epochs`` epochs on a 1:1 mix of clean and corrupted images (``clean_fraction`` of
   each batch stays clean; the rest gets a random corruption at a random severity, drawn per group
   of images from ``corruptions`` (default: the 14 of TIN-TC) x ``severities``). Each corrupted
   image is corrupted a second time, independently, and a consistency loss pulls the two versions
   together at ``layer``::

       L = CE(clean and first corrupted versions) + w * mean_i d(f_layer(x'_i), f_layer(x''_i))

   with d one of (f', f'': the flattened feature maps of the two corrupted versions)

   - ``euclidean``: the Euclidean (L2) distance ||f' - f''||_2, the paper's description of the
     oracle (the preset's choice). Like ``mse`` it can also be lowered by shrinking the features;
   - ``cosine``: the cosine distance 1 - cos(f', f''), the default of the ``RepresentationMatching``
     module in the authors' code (a ``CosineEmbeddingLoss``; sinzlab/nntransfer applies it to the
     flattened representations, as here). It cannot be met by shrinking the features to zero,
     which a squared error can: with ``mse`` our laptop-sized oracle's core collapsed. The
     schema's default, which the demo uses;
   - ``mse``: the mean squared difference over units, that module's other criterion
     (``nn.MSELoss``).

   The authors' code has no Euclidean criterion; ``euclidean`` follows the paper's text.

   Both versions get the same crop, flip and rotation, so they differ only by their corruptions.
2. The network up to ``layer`` is frozen (weights and BatchNorm statistics) and everything after
   it is re-initialised and trained on clean images for ``training.epochs`` epochs with
   cross-entropy alone.

The authors' code (sinzlab/neural_cotraining) has the pieces (``Distort(with_clean=True)``: half
the images clean, the others a random corruption at a random severity; ``RepresentationMatching``
between clean and noisy representations; freezing ``features[:17]``) but no published recipe for
the oracle; this follows the paper's description (consistency between corruptions of one image).

The oracle is both an arm (an upper bound on what a better core can do) and the source of the
MTL-oracle targets: a Gaussian readout fitted on its frozen core
(:func:`neurobias.jobs.oracle_targets`).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Regulariser

CONSISTENCIES = ("cosine", "euclidean", "mse")


class OracleTraining(Regulariser):
    """Not a penalty on stimulus images: it changes the classification batches while
    ``in_pretraining(epoch)`` and freezes the core afterwards (see :func:`neurobias.train.train_arm`)."""

    def __init__(self, layer: str, *, pretrain_epochs: int, consistency_weight: float = 1.0,
                 consistency: str = "cosine", corruptions=None, severities=(1, 2, 3, 4, 5),
                 clean_fraction: float = 0.5, groups: int = 4):
        super().__init__(weight=consistency_weight)
        if consistency not in CONSISTENCIES:
            raise ValueError(f"oracle: consistency must be one of {CONSISTENCIES}, got {consistency!r}")
        self.distance = consistency
        if pretrain_epochs < 1:
            raise ValueError(f"oracle: pretrain_epochs must be at least 1, got {pretrain_epochs}")
        if not 0 <= clean_fraction < 1:
            raise ValueError(f"oracle: clean_fraction must be in [0, 1), got {clean_fraction}")
        self.taps = (layer,)
        self.pretrain_epochs = int(pretrain_epochs)
        from ..robustness.corruptions import CORRUPTIONS, TIN_TC
        self.corruptions = tuple(corruptions or TIN_TC)  # default: every corruption of the test set
        unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"oracle: unknown corruptions {unknown}; known: {sorted(CORRUPTIONS)}")
        self.severities = tuple(int(s) for s in severities)
        self.clean_fraction, self.groups = float(clean_fraction), int(groups)

    def stimulus_batches(self, epoch: int, step: int) -> int:
        return 0

    def in_pretraining(self, epoch: int) -> bool:
        return epoch < self.pretrain_epochs

    def _corrupt_groups(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A random corruption and severity per group of images (uint8 in, uint8 out)."""
        from ..robustness.corruptions import corrupt
        out = torch.empty_like(images)
        for chunk in torch.arange(len(images)).tensor_split(min(self.groups, len(images))):
            name = self.corruptions[int(torch.randint(len(self.corruptions), (1,), generator=g))]
            severity = self.severities[int(torch.randint(len(self.severities), (1,), generator=g))]
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            chunk = chunk.to(images.device)
            out[chunk] = corrupt(images[chunk], name, severity, seed)
        return out

    def views(self, images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """uint8 [B,C,H,W] -> (first views [B,C,H,W]: clean then corrupted, second corruptions of the
        corrupted ones [B_c,C,H,W], B_c)."""
        n_clean = round(len(images) * self.clean_fraction)
        corrupted = images[n_clean:]
        first = torch.cat([images[:n_clean], self._corrupt_groups(corrupted, g)])
        return first, self._corrupt_groups(corrupted, g), len(corrupted)

    def consistency(self, features: torch.Tensor, n_batch: int, n_corrupted: int) -> torch.Tensor:
        """Distance at the layer between the two corrupted versions of each image, averaged over
        images; ``features`` holds the first views [n_batch] followed by the second ones.

        euclidean: mean_i ||f'_i - f''_i||_2 (a zero distance, two identical corruptions, has the
        zero subgradient); cosine: mean_i (1 - cos(f'_i, f''_i)); mse: mean over images and units
        of (f' - f'')^2."""
        first = features[n_batch - n_corrupted:n_batch].float().flatten(1)
        second = features[n_batch:].float().flatten(1)
        if self.distance == "mse":
            return (first - second).pow(2).mean()
        if self.distance == "euclidean":
            return torch.linalg.vector_norm(first - second, dim=1).mean()
        return (1 - torch.nn.functional.cosine_similarity(first, second, dim=1, eps=1e-8)).mean()

    def enter_second_stage(self, model: nn.Module, generator: torch.Generator | None, reinitialise: bool) -> None:
        """Freeze the core (parameters and BatchNorm statistics) and, at the switch itself,
        re-initialise the rest (a resumed run loads the already retrained weights instead)."""
        backbone = model.backbone
        if not hasattr(backbone, "core_modules"):
            raise ValueError(f"oracle: the {type(backbone).__name__} backbone cannot be split at a layer "
                             f"(supported: cornet_z and the VGGs)")
        for block in backbone.core_modules(self.taps[0]):
            for p in block.parameters():
                p.requires_grad_(False)
        if reinitialise:
            backbone.reset_after(self.taps[0], generator)

    def core_modules(self, model: nn.Module) -> list[nn.Module]:
        return model.backbone.core_modules(self.taps[0])


def build(arm: dict, target, train_rows, context: dict) -> OracleTraining:
    """The ``oracle`` kind's builder (declared in :mod:`neurobias.regularisers`)."""
    spec = arm["oracle"]
    return OracleTraining(arm["layer"], pretrain_epochs=spec["pretrain_epochs"],
                          consistency_weight=spec["consistency_weight"],
                          **{k: spec[k] for k in ("consistency", "corruptions", "severities", "clean_fraction", "groups")
                             if k in spec})
