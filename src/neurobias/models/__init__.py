"""Backbones with named feature taps.

Every model is wrapped in :class:`Classifier`, which takes images in [0, 1] (so that robustness
evaluations perturb pixels, not normalised values), normalises them with the training set's
channel statistics, and exposes ``forward_taps(x, taps) -> (logits, {tap: activation})``.

Extension point: :data:`ARCHITECTURES` maps the config's ``model.architecture`` to a constructor
``(num_classes, in_channels, **options) -> nn.Module`` that has ``forward_taps`` and ``tap_names``.
"""

from __future__ import annotations

import torch
from torch import nn

from .resnet import resnet18_cifar, resnet34_cifar

ARCHITECTURES = {
    "resnet18": lambda num_classes, in_channels, width=64: resnet18_cifar(num_classes, width, in_channels),
    "resnet34": lambda num_classes, in_channels, width=64: resnet34_cifar(num_classes, width, in_channels),
}


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, mean, std):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def tap_names(self):
        return self.backbone.tap_names

    def forward_taps(self, x, taps=()):
        return self.backbone.forward_taps((x - self.mean) / self.std, taps)

    def forward(self, x):
        return self.forward_taps(x)[0]


def build_classifier(architecture: str, num_classes: int, in_channels: int, mean, std, **options) -> Classifier:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model.architecture: unknown {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return Classifier(ARCHITECTURES[architecture](num_classes, in_channels, **options), mean, std)
