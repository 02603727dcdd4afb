"""The classifier every network is wrapped in, and the layout rules of evaluation.

:class:`Classifier` takes images in [0, 1] (so that robustness evaluations perturb pixels, not
normalised values), optionally resizes them (``input_size``), normalises them with the training
set's channel statistics, and exposes ``forward_taps(x, taps) -> (logits, {tap: activation})``.
:func:`build_classifier` builds the architecture a config names (declared in
:mod:`neurobias.models`) around it.

Every architecture also takes the classifier option ``input_size`` (int or None): images are
resized bilinearly (with antialiasing) to ``input_size`` x ``input_size`` before normalisation,
e.g. 227 to upsample CIFAR as Federer et al. 2020 did. None (the default) leaves them as they are.

And the classifier option ``vone`` (:mod:`.vone`, Dapello et al. 2020): a fixed Gabor front end
(VOneBlock: simple and complex cells with V1-like parameters and Poisson-like noise) and a trained
1x1 bottleneck in front of the backbone, which is then built with ``in_channels = bottleneck``.
``vone: {parameters: v1, noise: true, simple_channels: 16, ...}`` (keys and defaults:
:data:`.vone.VONE_DEFAULTS`; ``true`` or ``{}``: all defaults; null / false: off). The block sees the
resized, normalised image and adds the tap ``"vone"`` before the backbone's
(:func:`neurobias.layer_names.taps_for`).
"""

from __future__ import annotations

import numbers

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import architectures
from .vone import VOneBlock, VOneFront, vone_front  # noqa: F401  (VOneBlock, VOneFront: re-exported)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, mean, std, input_size: int | None = None):
        super().__init__()
        if input_size is not None:
            if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral) or input_size < 1:
                raise ValueError(f"model.input_size: expected a positive integer or null, got {input_size!r}")
            input_size = int(input_size)
        self.backbone = backbone
        # A plain attribute, not a buffer: the state dict stays what it was without the option.
        self.input_size = input_size
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def tap_names(self):
        return self.backbone.tap_names

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> ``input_size`` x ``input_size`` (bilinear, antialiased); no-op for None."""
        s = self.input_size
        if s is None or tuple(x.shape[-2:]) == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)

    def forward_taps(self, x, taps=(), **options):
        """``options`` go to the backbone (VGG: ``features_only``)."""
        return self.backbone.forward_taps((self.resize(x) - self.mean) / self.std, taps, **options)

    def forward(self, x):
        return self.forward_taps(x)[0]

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}" if self.input_size is not None else ""


def build_classifier(architecture: str, num_classes: int, in_channels: int, mean, std,
                     input_size: int | None = None, vone=None, **options) -> Classifier:
    """``options`` go to the backbone constructor; ``input_size`` and ``vone`` are the classifier's
    own options (``vone``: None / False, True or a mapping of :data:`.vone.VONE_DEFAULTS` keys)."""
    constructor = architectures()[architecture].load()
    if vone is None or vone is False:
        backbone = constructor(num_classes, in_channels, **options)
    else:
        backbone = vone_front(constructor, num_classes, in_channels, vone, input_size, **options)
    return Classifier(backbone, mean, std, input_size)


def inference_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch of images in channels_last layout for evaluation. Measured on the 2-core CPU (demo
    ResNet-18 w8, 500 images, fp32, 1 thread): 1.3x faster with a model in the default layout, 1.5x
    with a channels_last model (:func:`to_inference_layout`); logits within 3e-6 of NCHW's and the
    same predictions. Evaluation stays fp32: bf16 would change about 1 % of them."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


#: The fewest input channels (per group) a strided 1x1 convolution may have for a CPU to train it in
#: channels_last layout. oneDNN's AVX2 kernel for such a convolution's weight gradient on NHWC
#: inputs writes past its workspace when the convolution has fewer input channels than its block of
#: 8 (uxlfoundation/oneDNN#6035, open; oneDNN 3.12 in torch 2.14.1). Measured on an AVX2-only AMD
#: EPYC (a 1x1, stride-2 convolution, 2-7 input channels, batch 32): with one thread the process
#: dies (segmentation fault or glibc's "double free or corruption"), with two the weight gradient
#: is silently wrong; 1 and 8 or more input channels, stride 1, NCHW layout and the input's gradient
#: are right. A ResNet-18 narrower than 8 has one (layer2's shortcut).
MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS = 8


def strided_1x1_convolutions_too_narrow(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s strided 1x1 convolutions with fewer input channels per group than
    :data:`MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS`: the ones a CPU cannot train, nor take a gradient through, in
    channels_last."""
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and tuple(m.stride) != (1, 1)
            and m.in_channels // m.groups < MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS]


def channels_last_is_safe(model: nn.Module, device=None) -> bool:
    """Whether ``model`` may run forward and backward passes in channels_last on ``device`` (default:
    where its parameters are): anywhere but on a CPU for a network with a strided 1x1 convolution
    too narrow for oneDNN's kernel (:func:`strided_1x1_convolutions_too_narrow`)."""
    on_cpu = (torch.device(device).type == "cpu" if device is not None
              else all(p.device.type == "cpu" for p in model.parameters()))
    return not (on_cpu and strided_1x1_convolutions_too_narrow(model))


#: Images per forward pass when a CPU scores a deterministic network: the activations of 100
#: images stay in the caches. Measured on the 2-core CPU against 512 at a time
#: (benchmarks/evaluation_batch.py: fp32, 1 thread, channels_last, 500 and 2000 images): ResNet-18
#: w8 (the demo's) 1.4-1.5x faster, VGG-11-BN w8 1.2-1.3x, CORnet-Z w16 0.91-0.92x (its
#: activations are small either way), with bit for bit the same logits (tests/test_evaluation_sharing.py
#: checks this for a ResNet). A GPU takes larger batches; a network that draws noise draws it per
#: batch, so its scores depend on the batch.
CPU_EVAL_BATCH_SIZE = 100


def to_inference_layout(models: list) -> list:
    """Evaluation-only models moved to channels_last (see :func:`inference_layout`), in eval mode;
    a network for which that is not safe (:func:`channels_last_is_safe`) stays in NCHW, as it
    trains: a white-box attack's backward pass computes the narrow convolution's weight gradient
    too, which kills the process."""
    return [(m.to(memory_format=torch.channels_last) if channels_last_is_safe(m) else m).eval() for m in models]
