"""What the image filters of the corruptions and manipulations share: full float32 convolutions on
a GPU (a module of its own: :mod:`.corruptions` imports :mod:`.manipulations`, so neither can
host it for the other)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def exact_fp32_convolutions():
    """cuDNN's float32 convolutions in full float32 inside (IEEE), not TF32, torch's default on
    Ampere and newer GPUs, which rounds the inputs to a 10-bit mantissa: an image filter that must
    give the reference's numbers (a blur's weights summing to 1 to within TIE_EPS of a grey level)
    cannot have that. Without CUDA nothing changes."""
    conv = torch.backends.cudnn.conv
    saved = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = saved
