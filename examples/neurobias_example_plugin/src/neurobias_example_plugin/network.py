"""The ``tiny_cnn`` architecture: three convolution stages (conv, BatchNorm, ReLU) with named taps."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    tap_names = ("conv1", "conv2", "conv3")

    def __init__(self, num_classes: int, in_channels: int, width: int = 16):
        super().__init__()
        def stage(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))
        self.conv1 = stage(in_channels, width, True)
        self.conv2 = stage(width, 2 * width, True)
        self.conv3 = stage(2 * width, 4 * width, False)
        self.head = nn.Linear(4 * width, num_classes)

    def forward_taps(self, x: torch.Tensor, taps=(), features_only: bool = False):
        """(logits, {tap: activation}) as every neurobias backbone; ``features_only`` stops after the
        last requested tap (the logits are then None)."""
        feats = {}
        last = max((self.tap_names.index(t) for t in taps), default=len(self.tap_names) - 1)
        h = x
        for i, name in enumerate(self.tap_names):
            h = getattr(self, name)(h)
            if name in taps:
                feats[name] = h
            if features_only and i >= last:
                return None, feats
        return self.head(h.mean(dim=(2, 3))), feats


def tiny_cnn(num_classes: int, in_channels: int, width: int = 16) -> TinyCNN:
    return TinyCNN(num_classes, in_channels, width)
