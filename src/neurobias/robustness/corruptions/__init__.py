"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) as batched torch operations.

The reference is imagecorruptions 1.1.2 (bethgelab), the package Safarani et al. (2021) and most
later work use: same names, same severity tables, same image-size-dependent parameters, and, where
feasible, the same arithmetic. This package never imports it (tests and benchmark compare against
it through :mod:`neurobias.robustness.reference_corruptions`).

Layout
------
This module holds the public API: the registry, the dispatch (``corrupt``: checks, grey images,
chunking, threads, quantisation) and the ``CPU_KERNELS`` switch. The corruptions live in one
module per ImageNet-C category, whose docstrings describe each corruption and its agreement with
the reference: :mod:`.noise` (gaussian_noise, shot_noise, impulse_noise), :mod:`.blur`
(defocus_blur, glass_blur, motion_blur, zoom_blur), :mod:`.weather` (snow, frost, fog,
brightness) and :mod:`.digital` (contrast, elastic_transform, pixelate, jpeg_compression);
``_common`` holds what several categories share (random draws, quantisation, the kernel switch's
lookup, per-device table cache). Their public names (parameter tables such as ``SNOW``,
``FROST_FILES``, helpers such as ``defocus_kernel`` or ``plasma_fractal``, the corruption
functions) are re-exported here.

Public API
----------
``corrupt(images, name, severity, seed)``
    uint8 [N, C, H, W] (C = 1 or 3, H, W >= 32, any device) -> uint8 [N, C, H, W] on the same
    device. The result is quantised as imagecorruptions' ``corrupt`` does: ``np.uint8`` of the
    float result, i.e. clipped to [0, 1], times 255 and *truncated* (not rounded).
    Grey images (C = 1) are replicated to three channels (as imagecorruptions does), corrupted,
    and converted back to one channel with ITU-R 601-2 luma exactly as PIL's ``convert('L')``:
    ``L = (19595 R + 38470 G + 7471 B + 2**15) >> 16`` (0.299 R + 0.587 G + 0.114 B, rounded).
    Unknown names and severities outside 1..5 raise ValueError listing the valid values.
``CORRUPTIONS``
    name -> function ``(x, severity, generator) -> y``: x float32 [N, 3, H, W] in [0, 1] (values
    k / 255), severity 1..5, generator a CPU ``torch.Generator`` for every random draw; y on the
    [0, 1] scale, not yet clipped (float), or already quantised (uint8, 0..255). **This is the
    extension point**: a new corruption is one such function added to the dict (and to
    ``CATEGORIES`` if it belongs to one); ``corrupt`` handles dtype, grey images, chunking,
    threads and quantisation. Functions treat the images of the batch independently and process
    them together (no per-image Python loops). (Functions of this package that work on uint8
    images carry the uint8 implementation as ``.uint8_impl``, which ``corrupt`` calls directly.)
``CATEGORIES`` (noise, blur, weather, digital), ``category_of(name)``, ``TIN_TC`` (the 14 of
    Tiny-ImageNet-C as used by Safarani et al. 2021: without glass_blur), ``SEVERITIES``, ``luma``.
Randomness, determinism, threads
--------------------------------
``seed`` is an int (a CPU generator is seeded with it) or a CPU ``torch.Generator``. ``corrupt``
splits the batch into chunks of a fixed number of pixels (per corruption: 32 to 512 images at
64 x 64, ``CHUNK_PIXELS``), draws one seed per chunk from ``seed`` up front and gives every
chunk its own generator. The output is therefore a pure function of (images, name, severity,
seed, device type): it does not depend on the number of threads. Every image gets its own
independent draws, as in the reference (motion blur: one angle per image, etc.).
Per-image parameters (angles, texture choice and crop, glass offsets, fog fractals) are drawn on
the CPU. Per-pixel fields (noise, snow and displacement fields) are drawn on the images' device:
on a GPU from a device generator seeded from the chunk's generator, so GPU and CPU results differ
for those corruptions (each is deterministic). On the CPU, chunks run on ``workers`` threads
(default ``torch.get_num_threads()``) with one intra-op thread each.

Two implementations, one result
-------------------------------
Every corruption is written as batched torch operations: that is what runs on a GPU. On the CPU,
where that form spends most of its time in many small passes over the batch (a blur tap, a
shifted slice, a look-up) rather than in arithmetic, all but Gaussian noise, defocus, zoom blur
and JPEG run a compiled per-pixel kernel instead (:mod:`neurobias.robustness.cpu_kernels`,
numba; 1.2-2.6x faster per corruption, 1.45x overall, measured side by side by
``benchmarks/corruption_speed.py``; the other four spend their time in torch's normal draws,
oneDNN's convolution, a sparse matrix product and libjpeg). The
kernels take the same random draws from the same generators and do the same float32/float64
operations in the same order (fused multiply-adds where torch's CPU kernels use them), so their
output is identical to the torch form's, checked on every corruption and severity by the tests;
the exception is glass blur, whose Gaussian blurs sum their taps in another order than oneDNN's
convolution (one grey level in <= 3e-4 of the values). ``CPU_KERNELS = False`` runs the torch
form on the CPU too.

Agreement with imagecorruptions 1.1.2 (tolerances measured in ``tests/test_corruptions.py``)
------------------------------------------------------------------------------------------
*Bit-exact*: brightness (skimage's rgb2hsv/hsv2rgb replayed operation by operation in float64;
what depends only on a pixel's maximum and minimum is tabulated; checked on all 2**24 colours),
contrast (float64 lookup table per image and channel), pixelate (Pillow's fixed-point BOX and
NEAREST resampling), jpeg_compression (the same libjpeg, through torchvision).
*Same arithmetic in float32*: defocus, zoom, motion and glass blur, snow, fog, frost, elastic
transform; given the same random draws they differ by one grey level in 0.001-1% of the values.
Those linear filters map a flat neighbourhood of value k to k S (S the weight sum): the
reference's float64/float32 arithmetic puts that a few ulp below or above k and truncation then
gives k - 1 or k; ``blur._resolve_ties`` replays the reference's arithmetic for flat
neighbourhoods (``blur._tie_table``) and uses its answer for our values within 1e-4 of an integer.
*Same distribution*: gaussian_noise (exact normal draws), shot_noise (Walker alias tables over
the reference's c + 1 possible outputs, probabilities exact to ~1e-7, float32 uniforms),
impulse_noise (16-bit uniforms: probabilities rounded to multiples of 2**-16).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from ._common import U16, _finalise  # noqa: F401
from .blur import (  # noqa: F401
    DEFOCUS_BLUR, DEFOCUS_KERNEL_SUMS, GLASS_BLUR, MOTION_BLUR, TIE_EPS, ZOOM_BLUR, clipped_zoom_matrix, defocus_blur,
    defocus_kernel, glass_blur, glass_source_map, motion_blur, motion_taps, zoom_blur)
from .digital import (  # noqa: F401
    CONTRAST, ELASTIC_ALPHA, JPEG_QUALITY, PIXELATE, contrast, elastic_transform, jpeg_compression, pixelate)
from .noise import GAUSSIAN_NOISE, IMPULSE_NOISE, SHOT_NOISE, gaussian_noise, impulse_noise, shot_noise  # noqa: F401
from .weather import (  # noqa: F401
    BRIGHTNESS, FOG, FROST, FROST_DIR, FROST_FILES, N_FROST_USED, SNOW, brightness, fog, frost, frost_scale,
    plasma_fractal, snow)

CPU_KERNELS = True
"""Use the compiled CPU kernels (:mod:`neurobias.robustness.cpu_kernels`) for images on the CPU
where there is one; False runs the torch implementation (the GPU's) on the CPU too (tests,
benchmarks). Read at call time by the category modules: set it here, on the package."""

SEVERITIES = (1, 2, 3, 4, 5)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}

CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}

TIN_TC: tuple[str, ...] = tuple(n for n in CORRUPTIONS if n != "glass_blur")
"""Tiny-ImageNet-C as used by Safarani et al. (2021): the 15 ImageNet-C corruptions without
glass_blur."""


def category_of(name: str) -> str:
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    raise ValueError(f"unknown corruption {name!r}; categorised corruptions: "
                     f"{', '.join(n for names in CATEGORIES.values() for n in names)}")


def _check(name: str, severity) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an integer in {list(SEVERITIES)}, got {severity!r}")


CHUNK_PIXELS = 1 << 17  # pixels per chunk (32 images of 64 x 64): the working set stays in cache
CHUNK_PIXELS_FOR = {  # corruptions whose cost is per operation rather than per pixel get larger chunks
    "motion_blur": 1 << 21, "snow": 1 << 21, "glass_blur": 1 << 19, "frost": 1 << 19, "fog": 1 << 19,
    "jpeg_compression": 1 << 19, "brightness": 1 << 18,
}


def _chunk_images(name: str, h: int, w: int) -> int:
    """Images per chunk, a function of the corruption and the image size only (results do not
    depend on the machine or the number of workers)."""
    return max(1, CHUNK_PIXELS_FOR.get(name, CHUNK_PIXELS) // (h * w))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="corruptions")
    return _POOL


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """PIL's convert('L') of uint8 RGB [N, 3, H, W] -> [N, 1, H, W]: ITU-R 601-2 luma,
    (19595 R + 38470 G + 7471 B + 2**15) >> 16."""
    a = rgb.to(torch.int32)
    y = (a[:, 0:1] * 19595 + a[:, 1:2] * 38470 + a[:, 2:3] * 7471 + (1 << 15)) >> 16
    return y.to(torch.uint8)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int | torch.Generator,
            workers: int | None = None) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to uint8 images [N, C, H, W] (C = 1 or 3).

    Returns uint8 [N, C, H, W] on the images' device. ``seed``: int or CPU torch.Generator (the
    generator is advanced by one draw per chunk). On the CPU the chunks are processed by
    ``workers`` threads (default ``torch.get_num_threads()``), each running torch with one
    intra-op thread (many small operations: OpenMP teams cost more than they give, and stall
    badly when other processes compete for the cores); torch's thread count is set to 1 for the
    duration of the call and restored. The result does not depend on ``workers``. See the
    package docstring and the category modules' for semantics and agreement with
    imagecorruptions 1.1.2."""
    _check(name, severity)
    severity = int(severity)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be a uint8 tensor [N, C, H, W]")
    n, ch, h, w = images.shape
    if ch not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {ch}")
    if h < 32 or w < 32:
        raise ValueError(f"images must be at least 32 x 32 pixels (as imagecorruptions), got {h} x {w}")
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError("pass an int seed or a CPU torch.Generator")
        g = seed
    else:
        g = torch.Generator().manual_seed(int(seed))
    fn = CORRUPTIONS[name]
    native = getattr(fn, "uint8_impl", None)  # implemented on uint8 images: skip the float round trip
    step = _chunk_images(name, h, w)
    starts = list(range(0, n, step))
    seeds = torch.randint(0, 2 ** 62, (len(starts),), generator=g).tolist()
    out = torch.empty_like(images)

    cpu = images.device.type == "cpu"

    def work(start: int, chunk_seed: int) -> None:
        if cpu:
            torch.set_num_threads(1)  # this thread's intra-op pool
        chunk = images[start:start + step]
        chunk = chunk.expand(-1, 3, -1, -1).contiguous() if ch == 1 else chunk.contiguous()
        chunk_generator = torch.Generator().manual_seed(chunk_seed)
        with torch.inference_mode():  # less per-operation bookkeeping than no_grad: many small ops
            if native is not None:
                y = native(chunk, severity, chunk_generator)
            else:
                y = fn(chunk.float().div_(255), severity, chunk_generator)  # k / 255, correctly rounded
            q = _finalise(y)
        out[start:start + step] = luma(q) if ch == 1 else q

    jobs = list(zip(starts, seeds))
    if not cpu:
        for job in jobs:
            work(*job)
        return out
    threads = torch.get_num_threads()
    workers = min(threads if workers is None else int(workers), len(jobs))
    try:
        if workers <= 1:
            for job in jobs:
                work(*job)
        else:
            for future in [_pool(workers).submit(work, *job) for job in jobs]:
                future.result()
    finally:
        torch.set_num_threads(threads)
    return out


__all__ = ["CORRUPTIONS", "CATEGORIES", "TIN_TC", "SEVERITIES", "category_of", "corrupt", "luma"]
