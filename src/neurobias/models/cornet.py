"""CORnet-Z (Kubilius et al. 2018, "CORnet: Modeling the Neural Mechanisms of Core Object
Recognition", bioRxiv 408385) with a width option and named feature taps for regularisers.

Implemented from the published definition (dicarlolab/CORnet, ``cornet/cornet_z.py``): four
"areas" V1, V2, V4, IT, each one block

    Conv2d(kernel k, padding k // 2) -> ReLU -> MaxPool2d(3, stride 2, padding 1)

    V1: in_channels -> 64,  7x7, stride 2
    V2: 64  -> 128, 3x3, stride 1
    V4: 128 -> 256, 3x3, stride 1
    IT: 256 -> 512, 3x3, stride 1

and a decoder: adaptive average pool to 1x1 -> flatten -> Linear(512 -> num_classes). Conv and
linear weights are Xavier-uniform initialised, biases zero. ``width`` is V1's channel count
(default 64 = the published network); V2, V4, IT have 2x, 4x, 8x as many. Module names follow the
published model (``V1.conv``, ..., ``decoder.linear``), so its state dict maps onto
``backbone.*`` one to one.

Federer et al. 2020 (the similarity-regularised CORnet-Z) trained their own TensorFlow
re-implementation, which differs from the published definition: VALID (no) padding, local
response normalisation after every convolution, a 7x7 stride-2 max-pool after V1, an
AlexNet-style 4096-4096 fully connected decoder with dropout, and CIFAR images upsampled to
227x227. We follow the published definition; the upsampling is available for every architecture
as the classifier's ``input_size`` model option.

Output size at 32x32 input: V1 8x8, V2 4x4, V4 2x2, IT 1x1 (every block halves with its pool,
V1 also with its stride-2 conv). Tap names: ``V1``, ``V2``, ``V4``, ``IT`` (block outputs, after
the pool).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .core_split import CoreSplit
from .resnet import run_taps


class CORblockZ(nn.Module):
    """Conv(k, padding k // 2) -> ReLU -> MaxPool(3, stride 2, padding 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.nonlin = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        return self.pool(self.nonlin(self.conv(x)))


class CORnetZ(CoreSplit, nn.Module):
    tap_names = ("V1", "V2", "V4", "IT")

    def __init__(self, num_classes: int = 1000, width: int = 64, in_channels: int = 3):
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(f"cornet_z: width, in_channels and num_classes must be positive, got "
                             f"{width}, {in_channels}, {num_classes}")
        self.V1 = CORblockZ(in_channels, width, kernel_size=7, stride=2)
        self.V2 = CORblockZ(width, 2 * width)
        self.V4 = CORblockZ(2 * width, 4 * width)
        self.IT = CORblockZ(4 * width, 8 * width)
        self.decoder = nn.Sequential(OrderedDict([
            ("avgpool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("linear", nn.Linear(8 * width, num_classes)),
        ]))
        for m in self.modules():
            self._initialise(m)

    def _block(self, tap: str) -> nn.Module:
        return getattr(self, tap)

    @staticmethod
    def _initialise(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_taps(self, x: torch.Tensor, taps=(), features_only: bool = False
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # features_only is a hint (VGG stops early); the logits here cost next to nothing
        h, feats = run_taps(self, x, taps)
        return self.decoder(h), feats

    def forward(self, x):
        return self.forward_taps(x)[0]


def cornet_z(num_classes: int, width: int = 64, in_channels: int = 3) -> CORnetZ:
    return CORnetZ(num_classes, width, in_channels)


def build(num_classes: int, in_channels: int, width: int = 64) -> CORnetZ:
    """The declared ``cornet_z`` architecture's builder (neurobias.models)."""
    return cornet_z(num_classes, width, in_channels)
