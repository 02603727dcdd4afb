"""ResNet-18/34 with the CIFAR stem (3x3 conv, no max-pool; He et al. 2016 section 4.2) and a width
option, with named feature taps for regularisers.

Width 64 is the standard network Li et al. 2019 used; the demo uses a narrow one (e.g. 8) so that
it trains on two CPU cores in seconds. Tap names: ``stem``, ``layer1`` .. ``layer4``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def run_taps(model: nn.Module, x: torch.Tensor, taps=()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the stages named in ``model.tap_names`` in order; return the last output and the
    activations of the requested ``taps`` (the backbones whose stages form a chain share this)."""
    feats = {}
    h = x
    for name in model.tap_names:
        h = getattr(model, name)(h)
        if name in taps:
            feats[name] = h
    return h, feats


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    def __init__(self, num_classes: int, width: int = 64, blocks=(2, 2, 2, 2), in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, ch = [], width
        for i, n in enumerate(blocks):
            out = width * 2 ** i
            mods = [BasicBlock(ch, out, 1 if i == 0 else 2)] + [BasicBlock(out, out, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*mods))
            ch = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(ch, num_classes)
        self.tap_names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def forward_taps(self, x: torch.Tensor, taps=(), features_only: bool = False
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # features_only is a hint (VGG stops early); the logits here cost next to nothing
        h, feats = run_taps(self, x, taps)
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
        return logits, feats

    def forward(self, x):
        return self.forward_taps(x)[0]


def resnet18_cifar(num_classes: int, width: int = 64, in_channels: int = 3) -> ResNetCIFAR:
    return ResNetCIFAR(num_classes, width, (2, 2, 2, 2), in_channels)


def resnet34_cifar(num_classes: int, width: int = 64, in_channels: int = 3) -> ResNetCIFAR:
    """Li et al. 2019 Fig. 4B: ResNet-34 on grey CIFAR-100."""
    return ResNetCIFAR(num_classes, width, (3, 4, 6, 3), in_channels)


# Builders of the declared architectures (neurobias.models): (num_classes, in_channels, **options).
def resnet18(num_classes: int, in_channels: int, width: int = 64) -> ResNetCIFAR:
    return resnet18_cifar(num_classes, width, in_channels)


def resnet34(num_classes: int, in_channels: int, width: int = 64) -> ResNetCIFAR:
    return resnet34_cifar(num_classes, width, in_channels)
