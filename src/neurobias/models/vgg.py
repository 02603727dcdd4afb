"""VGG-11, VGG-16 and VGG-19 (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR; Table 1 configurations A, D and E) with a width option, optional batch norm,
and named feature taps for regularisers.

Configuration E (VGG-19) has four convolutions in stages 3-5 instead of three::

    64, 64, M, 128, 128, M, 256 x4, M, 512 x4, M, 512 x4, M

Safarani et al. 2021 use VGG-19 with batch norm on 64x64 grey Tiny ImageNet and share the
network up to ``conv3_1`` between the classification and the neural task
(:mod:`neurobias.regularisers.mtl`); :meth:`VGG.core_modules` and :meth:`VGG.reset_after` give the
parts before and after such a layer (:mod:`.core_split`) (the oracle network freezes the former and retrains the latter).

Features (configuration D): 3x3 convolutions with padding 1, each followed by ReLU (with
``batch_norm``: conv -> BatchNorm -> ReLU, as in VGG-16-BN), and 2x2 stride-2 max-pools:

    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M

``width`` (default 64 = the published network) scales every channel count proportionally
(w, 2w, 4w, 8w, 8w). Initialisation as torchvision's VGG: Kaiming-normal (fan-out) convs, N(0,
0.01) linear weights, zero biases. ``head_init: width_scaled`` gives the linear layers SD
0.01 * sqrt(4096 / fan_in) instead: the per-layer gain (0.64) of torchvision's 4096-wide head. With
N(0, 0.01) a narrow head (width 8: 64 features, gain 0.08) starts deep in the cross-entropy's
plateau; a baseline escapes it after a few epochs, but Safarani's uncertainty weighting scales
the cross-entropy by 1/(2 CE) ~ 0.22 at chance, and the MTL arms of a laptop-sized run never do
(measured: docs/studies/safarani2021.md).

Classifier: the usual CIFAR VGG head, adaptive average pool to 1x1 -> Linear(8w -> 8w) -> ReLU ->
Dropout(0.5) -> Linear(8w -> num_classes). The ImageNet head (three fully connected layers, 4096
wide, on a flattened 7x7x512 map) assumes 224x224 inputs: at 32x32 the last pool leaves a 1x1 map,
so 4096-wide layers would add ~20M parameters on 512 numbers. The adaptive pool also keeps the head
valid for larger inputs (e.g. ``input_size: 227``, where the last map is 7x7). Inputs must be at
least 32x32 (five halvings).

Tap names, in network order: ``conv1_1``, ``conv1_2``, ``pool1``, ``conv2_1``, ``conv2_2``,
``pool2``, ``conv3_1`` .. ``conv3_3``, ``pool3``, ``conv4_1`` .. ``conv4_3``, ``pool4``,
``conv5_1`` .. ``conv5_3``, ``pool5``; a conv tap is the activation after its ReLU. Federer et al.
2020 regularise "the third convolutional layer" of VGG-16, i.e. ``conv2_1``.
"""

from __future__ import annotations

import torch
from torch import nn

from .core_split import CoreSplit
from .random_draws import Dropout

# Configuration D: numbers are output channels at width 64, "M" a 2x2 stride-2 max-pool.
CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Configuration A (VGG-11): the smallest of the family, for CPU-sized studies.
CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
# Configuration E (VGG-19).
CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M")


def _layer_names(config=CONFIG_D) -> tuple[str, ...]:
    names, stage, conv = [], 1, 1
    for v in config:
        if v == "M":
            names.append(f"pool{stage}")
            stage, conv = stage + 1, 1
        else:
            names.append(f"conv{stage}_{conv}")
            conv += 1
    return tuple(names)


class VGG(CoreSplit, nn.Module):
    def __init__(self, num_classes: int, width: int = 64, in_channels: int = 3, batch_norm: bool = False,
                 config=CONFIG_D, head_init: str = "torchvision"):
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(f"vgg: width, in_channels and num_classes must be positive, got "
                             f"{width}, {in_channels}, {num_classes}")
        if head_init not in HEAD_INITS:
            raise ValueError(f"vgg: head_init must be one of {HEAD_INITS}, got {head_init!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"vgg: batch_norm must be true or false, got {batch_norm!r}")
        self.tap_names = _layer_names(config)
        self.features = nn.ModuleDict()
        ch = in_channels
        for name, v in zip(self.tap_names, config):
            if v == "M":
                self.features[name] = nn.MaxPool2d(kernel_size=2, stride=2)
                continue
            out = v * width // 64
            if out < 1:
                raise ValueError(f"vgg: width {width} gives {name} no channels")
            mods = [nn.Conv2d(ch, out, 3, 1, 1)]
            if batch_norm:
                mods.append(nn.BatchNorm2d(out))
            mods.append(nn.ReLU(inplace=True))
            self.features[name] = nn.Sequential(*mods)
            ch = out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(ch, ch), nn.ReLU(inplace=True), Dropout(0.5),
                                        nn.Linear(ch, num_classes))
        self.head_init = head_init
        for m in self.modules():
            self._initialise(m)

    def _block(self, tap: str) -> nn.Module:
        return self.features[tap]

    def _initialise(self, m: nn.Module) -> None:
        _initialise(m, self.head_init)

    def forward_taps(self, x: torch.Tensor, taps=(), features_only: bool = False
                     ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """(logits, {tap: activation}); ``features_only`` stops after the last requested tap and
        returns ``(None, feats)`` (a neural head on an early layer need not run the classifier)."""
        feats = {}
        h = x
        for name, layer in self.features.items():
            h = layer(h)
            if name in taps:
                feats[name] = h
                if features_only and len(feats) == len(set(taps)):
                    return None, feats
        logits = self.classifier(torch.flatten(self.pool(h), 1))
        return logits, feats

    def forward(self, x):
        return self.forward_taps(x)[0]


HEAD_INITS = ("torchvision", "width_scaled")


def _initialise(m: nn.Module, head_init: str = "torchvision") -> None:
    """torchvision's VGG initialisation for one module (others are left alone). ``head_init``
    ``width_scaled``: the linear layers' SD 0.01 * sqrt(4096 / fan_in) instead of 0.01, so a
    narrow head has the per-layer gain of torchvision's 4096-wide one (0.01 * sqrt(4096) = 0.64)."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        sd = 0.01 if head_init == "torchvision" else 0.01 * (4096 / m.in_features) ** 0.5
        nn.init.normal_(m.weight, 0.0, sd)
        nn.init.zeros_(m.bias)


def vgg16(num_classes: int, width: int = 64, in_channels: int = 3, batch_norm: bool = False,
          head_init: str = "torchvision") -> VGG:
    return VGG(num_classes, width, in_channels, batch_norm, CONFIG_D, head_init)


def vgg11(num_classes: int, width: int = 64, in_channels: int = 3, batch_norm: bool = True,
          head_init: str = "torchvision") -> VGG:
    """VGG-11 (configuration A), batch norm on by default: a laptop-sized stand-in for VGG-19 with
    the same stages, so a core ending at ``conv3_1`` means the same depth of pooling."""
    return VGG(num_classes, width, in_channels, batch_norm, CONFIG_A, head_init)


def vgg19(num_classes: int, width: int = 64, in_channels: int = 3, batch_norm: bool = True,
          head_init: str = "torchvision") -> VGG:
    """VGG-19 (configuration E); batch norm on by default (Safarani et al. 2021 use VGG-19-BN)."""
    return VGG(num_classes, width, in_channels, batch_norm, CONFIG_E, head_init)


# Builders of the declared architectures (neurobias.models): (num_classes, in_channels, **options).
# batch_norm defaults: off for VGG-16 (Federer et al.'s), on for VGG-11 and VGG-19 (Safarani et al.'s).
def build_vgg16(num_classes: int, in_channels: int, width: int = 64, batch_norm: bool = False,
                head_init: str = "torchvision") -> VGG:
    return vgg16(num_classes, width, in_channels, batch_norm, head_init)


def build_vgg11(num_classes: int, in_channels: int, width: int = 64, batch_norm: bool = True,
                head_init: str = "torchvision") -> VGG:
    return vgg11(num_classes, width, in_channels, batch_norm, head_init)


def build_vgg19(num_classes: int, in_channels: int, width: int = 64, batch_norm: bool = True,
                head_init: str = "torchvision") -> VGG:
    return vgg19(num_classes, width, in_channels, batch_norm, head_init)
