"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) as batched torch operations.

The reference is imagecorruptions 1.1.2 (bethgelab), the package Safarani et al. (2021) and most
later work use: same names, same severity tables, same image-size-dependent parameters, and, where
feasible, the same arithmetic. This module never imports it (tests and benchmark compare against
it through :mod:`neurobias.robustness.reference_corruptions`).

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
    them together (no per-image Python loops). (Functions of this module that work on uint8
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
gives k - 1 or k; ``_resolve_ties`` replays the reference's arithmetic for flat neighbourhoods
(``_tie_table``) and uses its answer for our values within 1e-4 of an integer.
*Same distribution*: gaussian_noise (exact normal draws), shot_noise (Walker alias tables over
the reference's c + 1 possible outputs, probabilities exact to ~1e-7, float32 uniforms),
impulse_noise (16-bit uniforms: probabilities rounded to multiples of 2**-16).

Per corruption
--------------
gaussian_noise  x + N(0, c^2).
shot_noise      Poisson(x c) / c (only min(K, c) matters: c + 1 outcomes per pixel value).
impulse_noise   salt-and-pepper, amount c, half salt (skimage ``random_noise(mode='s&p')``).
defocus_blur    the reference's anti-aliased disk kernel (its formula, recomputed), reflect-101
                borders as ``cv2.filter2D``; a depthwise convolution. (At severities 4-5 the
                disk touches the kernel border and cv2's reflection makes the weights sum to
                1.01: the reference brightens by 1%, and so do we.)
glass_blur      Gaussian blur (scipy's kernel, 'nearest' borders) -> truncation to uint8 -> the
                reference's local pixel "swaps" -> Gaussian blur. imagecorruptions' swap
                ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` acts on numpy views and therefore
                *copies* (x[h, w] <- x[h2, w2]; x[h2, w2] is unchanged), sequentially over
                h = H-d..d+1, w = W-d..d+1 (descending), offsets uniform in [-d, d-1]. That
                process is reproduced exactly as a per-image map of where each pixel's value
                comes from, made by replaying the copies one by one in a compiled loop (on the
                CPU for every device; ~8 us per image and pass), then applied as one gather.
                Offsets come from 16-bit uniforms (for d = 3, the six values have probabilities
                1/6 to within 2e-5).
motion_blur     imagecorruptions 1.1.2's own ``_motion_blur`` (not Wand): one-sided Gaussian line
                kernel, integer shifts with edge replication, one uniform angle in [-45, 45] deg
                per image. Images are sorted by angle; in small blocks, every tap is one shifted
                slice for each run of images that share its shift.
zoom_blur       mean of the image and its centre-cropped, linearly zoomed copies (scipy
                ``zoom(order=1)`` weights, taken from scipy once per size) as one sparse operator.
snow            Gaussian snow layer (drawn only in the centre crop that clipped_zoom keeps: the
                rest never reaches the image), clipped-zoomed (as above), thresholded, motion-blurred with an
                angle in [-135, -45] deg per image, rounded to 1/255, added with its 180-degree
                rotation to the image blended with its brightened greyscale (cv2's RGB2GRAY).
frost           one of the first five textures (the reference's ``randint(5)`` never picks the
                sixth), resized by the reference's factor (1.1 for images smaller than the
                texture; torch bicubic in float64, rounded: OpenCV's fixed-point INTER_CUBIC
                differs by one level in ~1e-5 of the texture pixels), random crop per image;
                ``np.clip(c0 x + c1 frost, 0, 255)`` as a float64 table over (x, frost).
fog             the reference's diamond-square plasma fractal (with its ``wibble**2`` scaling),
                vectorised over the images, on a power-of-two map cropped to the image.
brightness      rgb2hsv -> V + c (clipped) -> hsv2rgb.
contrast        (x - mean) c + mean per image and channel.
elastic_transform  imagecorruptions 1.1.2's version (there is no affine part in 1.1.2, unlike the
                original ImageNet-C code): uniform displacement fields in +-0.005 H (from 16-bit
                uniforms), Gaussian-smoothed (sigma 0.01 of the size, truncate 3, 'reflect'),
                times alpha, bilinear resampling with scipy's 'reflect' (half-sample symmetric)
                boundary.
pixelate        Pillow BOX down to int(c W) x int(c H), NEAREST back up (Pillow's BOX is not an
                area average with fractional coverage: each output pixel averages the input
                pixels whose centres fall in its box).
jpeg_compression  JPEG at quality c and decoded (libjpeg through torchvision; on the CPU even
                for GPU tensors, because GPU codecs do not reproduce libjpeg's output).

The frost textures ship in ``frost/`` next to this module (Apache-2.0, from the ImageNet-C
repository via imagecorruptions; see ``frost/README.md``); their SHA-256 are pinned below.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .manipulations import symmetric_pad

SEVERITIES = (1, 2, 3, 4, 5)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}

# imagecorruptions 1.1.2's parameter tables, severity 1..5.
GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE = (60, 25, 12, 5, 3)
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius, alias blur
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, delta, iterations
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma
ZOOM_BLUR = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))
SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FOG = ((1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4))
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_QUALITY = (25, 18, 15, 10, 7)

FROST_DIR = Path(__file__).resolve().parent / "frost"
FROST_FILES = {  # name: sha256 (the files of imagecorruptions 1.1.2 / ImageNet-C)
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}
N_FROST_USED = 5  # imagecorruptions draws np.random.randint(5): frost6 is never used

U16 = 65536  # resolution of the 16-bit uniforms (impulse noise, glass blur offsets)


# ----------------------------------------------------------------------------------------------
# random draws


CPU_KERNELS = True
"""Use the compiled CPU kernels (:mod:`neurobias.robustness.cpu_kernels`) for images on the CPU
where there is one; False runs the torch implementation (the GPU's) on the CPU too (tests)."""


def _kernels(x: torch.Tensor) -> bool:
    return CPU_KERNELS and x.device.type == "cpu"


def _cpu_kernels():
    """The kernels module, imported on first use (numba's import and the kernels' compilation
    or cache loading cost ~0.5 s: jobs that only read this module's tables don't pay it)."""
    from . import cpu_kernels

    return cpu_kernels


def _child_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=g))


def _fill(t: torch.Tensor, g: torch.Generator, fill: Callable[[torch.Tensor, torch.Generator], None]) -> torch.Tensor:
    """Fill ``t`` in place with random values: on the CPU from g itself, on a GPU from a device
    generator seeded from g."""
    if t.device.type != "cpu":
        fill(t, torch.Generator(device=t.device).manual_seed(_child_seed(g)))
    else:
        fill(t, g)
    return t


def _randn(shape, g, device, dtype=torch.float32) -> torch.Tensor:
    return _fill(torch.empty(shape, dtype=dtype, device=device), g, lambda t, gg: t.normal_(generator=gg))


def _rand(shape, g, device, dtype=torch.float32) -> torch.Tensor:
    return _fill(torch.empty(shape, dtype=dtype, device=device), g, lambda t, gg: t.uniform_(generator=gg))


def _random_int16(n: int, g, device) -> torch.Tensor:
    """n independent uniform int16 values (all 65536 equally likely), four per 64-bit draw.
    (``random_()`` without bounds gives only 63 random bits for int64: the full range is asked.)"""
    words = _fill(torch.empty((n + 3) // 4, dtype=torch.int64, device=device), g,
                  lambda t, gg: t.random_(-2 ** 63, 2 ** 63 - 1, generator=gg))
    return words.view(torch.int16)[:n]


# ----------------------------------------------------------------------------------------------
# small helpers


def _uint8_of(x: torch.Tensor) -> torch.Tensor:
    """The uint8 images k behind float images x = k / 255."""
    return torch.round(x * 255).to(torch.uint8)


def _finalise(y: torch.Tensor) -> torch.Tensor:
    """A corruption's result as uint8: as is if uint8, else np.uint8(np.clip(y, 0, 1) * 255)
    (truncation)."""
    if y.dtype == torch.uint8:
        return y
    return y.clamp_(0, 1).mul_(255).to(torch.int32).to(torch.uint8)  # float -> int truncates


# Note on speed (CPU): in this module, selections are table look-ups (index_select) or bitwise
# operations rather than torch.where / masked_fill, which are several times slower on the CPU
# for these sizes; large fresh allocations are avoided where easy (page faults are expensive).

TIE_EPS = 1e-4  # in grey levels: our float32 results this close to an integer count as ties


def _resolve_ties(v255: torch.Tensor, ties: torch.Tensor, dtype=torch.uint8) -> torch.Tensor:
    """np.uint8(np.clip(v, 0, 255)) of linear-filter outputs v on the 0..255 scale.

    A filter whose weights sum to S maps a flat neighbourhood of value k to k S, which the
    reference computes in float64 (or float32) as k -/+ a few ulp, so that its truncation gives k
    or k - 1 depending on how *its* arithmetic rounds; float32 arithmetic cannot reproduce that
    (flat regions are common: synthetic images, saturated skies). Values within ``TIE_EPS`` of
    an integer r take the reference's output for a flat neighbourhood of value r (obtained by
    replaying its arithmetic, see ``_tie_table``); the rest are truncated. Generic values that
    close to an integer are rare (~2e-4) and may go either way.

    With t = v + TIE_EPS, r = floor(t) and b = min(floor((t - r) / TIE_EPS), 2): b = 0 means v
    within TIE_EPS below r, 1 within TIE_EPS above r, 2 no tie (and then floor(v) = r); the
    output is the table entry 3 r + b."""
    t = v255.clamp_(0, 255).add_(TIE_EPS)
    r = torch.floor(t)
    key = t.sub_(r).mul_(1 / TIE_EPS).floor_().clamp_(max=2).add_(r.mul_(3)).to(torch.int32)
    out = ties.index_select(0, key.reshape(-1)).view(key.shape)
    return out if out.dtype == dtype else out.to(dtype)


def _tie_table(values: np.ndarray) -> torch.Tensor:
    """uint8 [256 * 3] for ``_resolve_ties`` from the reference's outputs ``values`` (grey levels,
    before truncation) for flat neighbourhoods k = 0..255: entries 3 r + 0 / 1 / 2 are the outputs
    for v just below r, just above r, and otherwise (floor). A flat value that is not within
    TIE_EPS of k gives no tie information: then the truncation of v itself."""
    values = np.asarray(values, dtype=np.float64)
    flat = np.trunc(np.clip(values, 0, 255))
    known = np.abs(values - np.arange(256)) < TIE_EPS
    r = np.arange(256)
    table = np.stack([np.where(known, flat, np.maximum(r - 1, 0)), np.where(known, flat, r), r], axis=1)
    return torch.from_numpy(table.reshape(-1).astype(np.uint8))


def _scipy_gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights (``_gaussian_kernel1d`` with order 0)."""
    radius = int(truncate * float(sigma) + 0.5)
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / sigma2 * x ** 2)
    return phi / phi.sum()


def _filter_matrix(n: int, weights: np.ndarray, mode: str) -> np.ndarray:
    """Dense [n, n] matrix M of a 1-D correlation with centred ``weights``: out = M @ signal.
    mode 'nearest' (edge replication) or 'reflect' (scipy's half-sample symmetric)."""
    r = len(weights) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for j, w in enumerate(weights):
            s = i + j - r
            if mode == "nearest":
                s = min(max(s, 0), n - 1)
            elif mode == "reflect":
                while s < 0 or s >= n:
                    s = -s - 1 if s < 0 else 2 * n - 1 - s
            else:
                raise ValueError(mode)
            m[i, s] += w
    return m


@functools.lru_cache(maxsize=64)
def _filter_matrix_t(n: int, weights: tuple, mode: str, device: str, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(_filter_matrix(n, np.array(weights), mode), dtype=dtype, device=device)


def _planes_conv(planes: torch.Tensor, kernel: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Valid 2-D correlation of every plane [P, Hp, Wp] with one kernel [kh, kw].

    On the CPU the planes are grouped 16 to a sample, the case oneDNN's depthwise kernel
    vectorises (a 1-channel convolution takes a slow path, ~10x slower)."""
    p, hp, wp = planes.shape
    kh, kw = kernel.shape
    if planes.device.type != "cpu":
        return F.conv2d(planes[:, None], kernel[None, None].to(planes)).squeeze(1)
    group = 16
    extra = (-p) % group
    if extra:
        planes = torch.cat([planes, planes.new_zeros(extra, hp, wp)])
    x = planes.view(-1, group, hp, wp)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, kernel.to(planes)[None, None].expand(group, 1, kh, kw).contiguous(), groups=group)
    return y.contiguous().view(-1, hp - kh + 1, wp - kw + 1)[:p]


def _depthwise_conv(planes: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 2-D correlation of every plane [P, Hp, Wp] with one kernel [k, k] -> [P, Hp-k+1, Wp-k+1]
    (channels-last layout: faster for 2-D kernels)."""
    return _planes_conv(planes, kernel, channels_last=True)


def _gaussian_blur_nearest(x: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter (mode 'nearest') of images [N, C, H, W] with 1-D ``weights``:
    edge-replicated padding, then a row and a column depthwise convolution."""
    n, c, h, w = x.shape
    r = len(weights) // 2
    k = torch.tensor(weights, dtype=torch.float32, device=x.device)
    planes = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="replicate").squeeze(1)
    planes = _planes_conv(_planes_conv(planes, k[None, :], False), k[:, None], False)
    return planes.view(n, c, h, w)


# ----------------------------------------------------------------------------------------------
# noise


def _gaussian_noise_apply(x: torch.Tensor, severity: int, std_normal: torch.Tensor) -> torch.Tensor:
    return std_normal.mul_(GAUSSIAN_NOISE[severity - 1]).add_(x)


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # no CPU kernel: most of the time is the normal draws (a one-pass kernel measured 0.96x)
    return _gaussian_noise_apply(x, severity, _randn(x.shape, generator, x.device))


_DEVICE_CACHE: dict = {}


def _on_device(key, device: torch.device, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A constant tensor (built on the CPU by ``make``, cached there) on ``device`` (cached)."""
    if device.type == "cpu":
        return make()
    k = (key, str(device))
    if k not in _DEVICE_CACHE:
        _DEVICE_CACHE[k] = make().to(device)
    return _DEVICE_CACHE[k]


@functools.lru_cache(maxsize=None)
def _shot_alias_cpu(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Alias tables (Walker/Vose) of the reference's output for every pixel value k = 0..255.

    The reference returns np.uint8(np.clip(K / c, 0, 1) * 255) with K ~ Poisson(k / 255 * c):
    only min(K, c) matters, c + 1 outcomes. Returns (prob float32 [256 * (c+1)], outcome uint8
    [256 * (c+1) * 2]: entry 2 (k (c+1) + column) + accepted is the column's own value if
    accepted, else its alias's value)."""
    lam = (np.arange(256) / 255.0) * c  # the reference: (np.array(x) / 255.) * c
    ks = np.arange(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        loglam = np.log(lam)
        logpmf = -lam[:, None] + ks[None, :] * loglam[:, None] - np.array([math.lgamma(k + 1) for k in ks])[None, :]
    pmf = np.exp(np.where(lam[:, None] > 0, logpmf, np.where(ks[None, :] == 0, 0.0, -np.inf)))
    pmf = np.concatenate([pmf, np.clip(1 - pmf.sum(axis=1, keepdims=True), 0, 1)], axis=1)  # [256, c+1]
    values = np.uint8(np.clip(np.arange(c + 1) / float(c), 0, 1) * 255)
    m = c + 1
    prob = np.ones((256, m))
    alias = np.tile(np.arange(m), (256, 1))
    for row in range(256):  # Vose's alias method
        scaled = pmf[row] / pmf[row].sum() * m
        small = [j for j in range(m) if scaled[j] < 1.0]
        large = [j for j in range(m) if scaled[j] >= 1.0]
        while small and large:
            lo, hi = small.pop(), large.pop()
            prob[row, lo], alias[row, lo] = scaled[lo], hi
            scaled[hi] -= 1.0 - scaled[lo]
            (small if scaled[hi] < 1.0 else large).append(hi)
    # outcome of (pixel value, column, accepted?): the alias's value, or the column's own
    outcome = np.stack([values[alias], np.broadcast_to(values, (256, m))], axis=-1)
    return torch.from_numpy(prob.astype(np.float32).reshape(-1)), torch.from_numpy(outcome.reshape(-1).copy())


def _shot_noise(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Poisson(x8 c) / c, sampled exactly (up to float32 uniforms) with alias tables over the
    reference's c + 1 possible outputs per pixel value."""
    c = SHOT_NOISE[severity - 1]
    prob, outcome = (_on_device(("shot", c, i), x8.device, lambda i=i: _shot_alias_cpu(c)[i]) for i in range(2))
    t = _rand(x8.shape, generator, x8.device)
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().shot_noise_apply(x8.numpy(), t.numpy(), c, prob.numpy(), outcome.numpy(),
                                                             np.empty(x8.shape, np.uint8)))
    t = t.mul_(c + 1)
    col = torch.floor(t)
    t.sub_(col)  # uniform in [0, 1): accept the column's own outcome if below prob
    col = col.to(torch.int32).clamp_(max=c).view(-1)
    idx = x8.view(-1).to(torch.int32).mul_(c + 1).add_(col)
    accept = t.view(-1) < prob.index_select(0, idx)
    return outcome.index_select(0, idx.mul_(2).add_(accept)).view(x8.shape)


def _impulse_noise(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """skimage.util.random_noise(mode='s&p', amount=c): each value independently becomes 0 or 1
    with probability c/2 each. One 16-bit uniform u per value: u < c/2 -> 0, c/2 <= u < c -> 1
    (the probabilities rounded to multiples of 2**-16)."""
    c = IMPULSE_NOISE[severity - 1]
    words = _random_int16(x8.numel(), generator, x8.device).view(x8.shape)
    pepper, salt = round(c / 2 * U16) - 32768, round(c * U16) - 32768
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().impulse_noise_apply(x8.numpy(), words.numpy(), pepper, salt,
                                                                np.empty(x8.shape, np.uint8)))
    u = words ^ -32768  # u16 - 32768, order-preserving
    flipped = (u < salt).view(torch.uint8).neg_()  # 0xFF where the value is replaced
    salted = (u >= pepper).view(torch.uint8).neg_()  # 0xFF (salt) or 0 (pepper) where replaced
    return (x8 & ~flipped) | (salted & flipped)


# ----------------------------------------------------------------------------------------------
# blur


def _cv2_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0 (float64)."""
    x = np.arange(ksize) - (ksize - 1) * 0.5
    t = np.exp((-0.5 / (sigma * sigma)) * x * x)
    return t * (1.0 / t.sum())


def _reflect101_index(i: int, n: int) -> int:
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * n - 2 - i
    return i


@functools.lru_cache(maxsize=None)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """imagecorruptions' ``disk(radius, alias_blur)`` (float32), without cv2: the aliased disk
    blurred by cv2.GaussianBlur (kernel ksize 3 or 5, reflect-101 borders), then trimmed to its
    non-zero support (exactly zero outside)."""
    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), 3
    else:
        L, ksize = np.arange(-radius, radius + 1), 5
    X, Y = np.meshgrid(L, L)
    disk = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=np.float32)
    disk /= np.sum(disk)
    g = _cv2_gaussian_kernel(ksize, alias_blur).astype(np.float32).astype(np.float64)
    n, r = disk.shape[0], ksize // 2
    rows = np.zeros_like(disk, dtype=np.float64)
    for j in range(n):  # horizontal pass, then vertical, as cv2's separable filter
        for t in range(ksize):
            rows[:, j] += g[t] * disk[:, _reflect101_index(j + t - r, n)]
    out = np.zeros_like(rows)
    for i in range(n):
        for t in range(ksize):
            out[i] += g[t] * rows[_reflect101_index(i + t - r, n)]
    out = out.astype(np.float32)
    nz = np.flatnonzero(out.any(axis=0))
    lo, hi = min(nz[0], n - 1 - nz[-1]), None
    hi = n - lo
    return out[lo:hi, lo:hi]


# Sums of imagecorruptions' float32 defocus kernels as cv2.GaussianBlur (opencv-python 5.0.0.93)
# computes them; ours (same formula, numpy arithmetic) differ by ~1e-8 from these, which matters
# only for how the reference truncates flat regions (tests check these against the reference).
DEFOCUS_KERNEL_SUMS = (float.fromhex("0x1.ffffffe000000p-1"), float.fromhex("0x1.fffffeda00000p-1"),
                       float.fromhex("0x1.ffffffc900000p-1"), float.fromhex("0x1.03525bfea0000p+0"),
                       float.fromhex("0x1.02c2db9d89ebcp+0"))


@functools.lru_cache(maxsize=None)
def _defocus_flat(severity: int) -> torch.Tensor:
    """cv2.filter2D in float64 maps flat k / 255 to (k / 255) S, S the kernel's sum (1 - 4e-9 ..
    1 - 3e-8 at severities 1-3: flat regions lose one grey level; 1.01 at 4-5, where the disk
    touches the kernel border and cv2's reflection adds weight)."""
    total = DEFOCUS_KERNEL_SUMS[severity - 1]
    return _tie_table(np.clip(np.arange(256) / 255.0 * total, 0, 1) * 255)


def _defocus_blur(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    kernel = torch.from_numpy(defocus_kernel(*DEFOCUS_BLUR[severity - 1]))
    n, c, h, w = x8.shape
    r = kernel.shape[-1] // 2
    planes = F.pad(x8.view(n * c, 1, h, w).float(), (r, r, r, r), mode="reflect").squeeze(1)  # REFLECT_101
    y = _depthwise_conv(planes, kernel.to(x8.device)).view(n, c, h, w)
    return _resolve_ties(y, _on_device(("defocus_flat", severity), x8.device, lambda: _defocus_flat(severity)))


def _glass_map(h: int, w: int, delta: int, dx: np.ndarray, dy: np.ndarray, words: bool = False) -> np.ndarray:
    """Where every pixel comes from after imagecorruptions' local "swaps": int64 [N, h*w] flat
    source index per flat position, for offsets dx, dy int [iterations, N, n_positions] in the
    reference's sequential order of positions (or 16-bit uniforms that map to them, words=True).
    The copies are replayed one by one in a compiled loop (``cpu_kernels.glass_source_map``;
    ~8 us per image and pass at 64 x 64), for every device: the map is a per-image parameter,
    made on the CPU."""
    out = np.empty((dx.shape[1], h * w), dtype=np.int64)
    return _cpu_kernels().glass_source_map(h, w, delta, np.ascontiguousarray(dx), np.ascontiguousarray(dy), words, out)


def glass_source_map(h: int, w: int, delta: int, offsets: np.ndarray) -> np.ndarray:
    """``_glass_map`` for offsets int [N, iterations, n_positions, 2] = (dx, dy) per position in
    the reference's order (as numpy draws them); returns int64 [N, h*w]."""
    o = np.asarray(offsets).transpose(1, 0, 2, 3)  # [it, N, P, 2]
    return _glass_map(h, w, delta, o[..., 0], o[..., 1])


def _scipy_flat(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scipy.ndimage.correlate1d (symmetric weights: centre first, then the outer pairs inwards)
    applied to constant signals ``values`` (float64), as its C loop sums."""
    r = len(weights) // 2
    acc = values * weights[r]
    for j in range(r, 0, -1):
        acc = acc + (values + values) * weights[r - j]
    return acc


@functools.lru_cache(maxsize=None)
def _glass_flat(severity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat-neighbourhood outputs of the two Gaussian blurs (each along rows then columns)."""
    weights = _scipy_gaussian_kernel(GLASS_BLUR[severity - 1][0], 4.0)
    k = np.arange(256) / 255.0
    blurred = _scipy_flat(_scipy_flat(k, weights), weights)
    return _tie_table(blurred * 255), _tie_table(np.clip(blurred, 0, 1) * 255)


_GLASS_BLOCK = 32  # images per block of the blurs and the gather (in cache); the map is made per chunk


def _glass_apply(x8: torch.Tensor, severity: int, src: np.ndarray) -> torch.Tensor:
    sigma, delta, iterations = GLASS_BLUR[severity - 1]
    n, c, h, w = x8.shape
    weights = _scipy_gaussian_kernel(sigma, 4.0)  # skimage.filters.gaussian: truncate 4, mode 'nearest'
    flat1, flat2 = (_on_device(("glass_flat", severity, i), x8.device, lambda i=i: _glass_flat(severity)[i]) for i in range(2))
    if _kernels(x8):
        k32 = weights.astype(np.float32)
        out = torch.empty_like(x8)
        _cpu_kernels().glass_apply(x8.numpy(), k32, src, flat1.numpy(), flat2.numpy(), out.numpy())
        return out
    src = torch.from_numpy(src).to(x8.device)
    out = torch.empty_like(x8)
    for start in range(0, n, _GLASS_BLOCK):
        stop = min(start + _GLASS_BLOCK, n)
        b = stop - start
        k = _resolve_ties(_gaussian_blur_nearest(x8[start:stop].float(), weights), flat1, torch.float32)  # np.uint8(gaussian(x8) * 255)
        k = torch.gather(k.view(b, c, h * w), 2, src[start:stop, None, :].expand(b, c, h * w)).view(b, c, h, w)
        out[start:stop] = _resolve_ties(_gaussian_blur_nearest(k, weights), flat2)
    return out


def _glass_blur(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    _, delta, iterations = GLASS_BLUR[severity - 1]
    n, _, h, w = x8.shape
    n_pos = max(h - 2 * delta, 0) * max(w - 2 * delta, 0)
    u = _random_int16(2 * iterations * n * n_pos, generator, torch.device("cpu")).view(2, iterations, n, n_pos).numpy()
    return _glass_apply(x8, severity, _glass_map(h, w, delta, u[0], u[1], words=True))  # randint(-d, d)


def motion_taps(width: int, sigma: float, angles: np.ndarray, h: int, w: int):
    """imagecorruptions' ``_motion_blur`` taps for each angle (degrees, float64 [N]).

    Returns (kernel [width], dy [N, width], dx [N, width], valid [N, width]): tap i adds
    kernel[i] * x[clamp(r - dy), clamp(c - dx)]; taps from the first whose shift reaches the
    image size on are dropped (the reference's ``break``)."""
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)
    k = k / np.sum(k)
    angles = np.asarray(angles, dtype=np.float64)
    p0 = width * np.sin(np.deg2rad(angles))
    p1 = width * np.cos(np.deg2rad(angles))
    hyp = np.hypot(p0, p1)
    i = np.arange(width)[None, :]
    dy = -np.ceil((i * p0[:, None]) / hyp[:, None] - 0.5).astype(np.int64)
    dx = -np.ceil((i * p1[:, None]) / hyp[:, None] - 0.5).astype(np.int64)
    valid = np.cumprod((np.abs(dy) < h) & (np.abs(dx) < w), axis=1).astype(bool)
    return k, dy, dx, valid


_MOTION_BLOCK_FLOATS = 1 << 20  # padded floats per block of images (4 MB: in L2 + L3 across the taps; longer runs, fewer slices)


def _motion_blur_apply(x: torch.Tensor, radius: int, sigma: float, angles: np.ndarray,
                       finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Sum over taps of kernel[i] * (x shifted by (dy_i, dx_i) with edge replication), per image
    (x float32, or uint8: converted block by block; the sums are float32);
    ``finish(sums, images)`` (optional) maps a block's float sums (which it may overwrite) and the
    indices of its images in x to the block's output (e.g. rounded to uint8).

    Images are sorted by angle and processed in small blocks that stay in cache from the first
    tap to ``finish``; within a block, for every tap, the runs of images with the same shift are
    one slice of the block's padded copy (neighbouring angles share most shifts), so there are
    no per-pixel gathers. Tap 0 (no shift, every image) initialises the sums."""
    n, c, h, w = x.shape
    width = 2 * radius + 1
    k, dy, dx, valid = motion_taps(width, sigma, angles, h, w)
    order = np.argsort(angles, kind="stable")
    dy, dx, valid = dy[order], dx[order], valid[order]
    dyv, dxv = np.where(valid, dy, 0), np.where(valid, dx, 0)
    big = 4 * (h + w) + 1
    key = np.where(valid, dy * big + dx, np.iinfo(np.int64).min)  # [n, width]
    span = (int(dyv.max()) - int(dyv.min()) + h) * (int(dxv.max()) - int(dxv.min()) + w) * c
    block = max(1, _MOTION_BLOCK_FLOATS // span)
    order_t = torch.from_numpy(order).to(x.device)
    sums = torch.empty((min(block, n), c, h, w), device=x.device)  # float32 whatever x's dtype
    out = None
    for start in range(0, n, block):
        stop = min(start + block, n)
        nb = stop - start
        images = order_t[start:stop]
        xb = x.index_select(0, images).float()  # uint8 images become float block by block, in cache
        top, bottom = max(int(dyv[start:stop].max()), 0), max(int(-dyv[start:stop].min()), 0)
        left, right = max(int(dxv[start:stop].max()), 0), max(int(-dxv[start:stop].min()), 0)
        xp = F.pad(xb, (left, right, top, bottom), mode="replicate") if (top or bottom or left or right) else xb
        acc = torch.mul(xb, float(k[0]), out=sums[:nb])  # tap 0: no shift for any angle
        # runs of equal shift per tap 1.., found for the whole block at once (taps outer, images inner)
        kb = key[start:stop, 1:]
        change = np.vstack([np.ones((1, width - 1), bool), kb[1:] != kb[:-1]])
        taps, lows = np.nonzero(change.T)
        highs = np.append(lows[1:], nb)
        highs[:-1][taps[1:] != taps[:-1]] = nb
        taps += 1
        keep = valid[start + lows, taps]
        taps, lows, highs = taps[keep], lows[keep], highs[keep]
        rows = (top - dy[start + lows, taps]).tolist()
        cols = (left - dx[start + lows, taps]).tolist()
        for lo, hi, r0, c0, weight in zip(lows.tolist(), highs.tolist(), rows, cols, k[taps].tolist()):
            acc[lo:hi].add_(xp[lo:hi, :, r0:r0 + h, c0:c0 + w], alpha=weight)
        y = acc if finish is None else finish(acc, images)
        if out is None:
            out = y.new_empty((n,) + tuple(y.shape[1:]))
        out.index_copy_(0, images, y)
    return out


def _kernel_taps(radius: int, sigma: float, angles: np.ndarray, h: int, w: int) -> tuple[np.ndarray, ...]:
    """``motion_taps`` as the CPU kernels take them: float32 kernel, shifts of invalid taps 0."""
    k, dy, dx, valid = motion_taps(2 * radius + 1, sigma, angles, h, w)
    return k.astype(np.float32), np.where(valid, dy, 0), np.where(valid, dx, 0), valid


@functools.lru_cache(maxsize=None)
def _motion_flat(severity: int) -> torch.Tensor:
    """The reference's float64 sum over taps (in tap order) of kernel[i] * k for flat k."""
    radius, sigma = MOTION_BLUR[severity - 1]
    kernel = motion_taps(2 * radius + 1, sigma, np.zeros(1), 1 << 30, 1 << 30)[0]
    k = np.arange(256, dtype=np.float64)
    acc = np.zeros(256)
    for weight in kernel:
        acc = acc + weight * k
    return _tie_table(acc)


def _motion_blur_image(x8: torch.Tensor, severity: int, angles: np.ndarray) -> torch.Tensor:
    radius, sigma = MOTION_BLUR[severity - 1]
    ties = _on_device(("motion_flat", severity), x8.device, lambda: _motion_flat(severity))
    # the reference blurs uint8 values
    if _kernels(x8):
        n, _, h, w = x8.shape
        out = torch.empty_like(x8)
        _cpu_kernels().motion_blur_apply(x8.numpy(), *_kernel_taps(radius, sigma, angles, h, w), ties.numpy(), out.numpy())
        return out
    return _motion_blur_apply(x8, radius, sigma, angles, finish=lambda y, _: _resolve_ties(y, ties))


def _motion_blur(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    angles = (torch.rand(x8.shape[0], generator=generator, dtype=torch.float64) * 90 - 45).numpy()
    return _motion_blur_image(x8, severity, angles)


@functools.lru_cache(maxsize=None)
def clipped_zoom_matrix(n: int, zoom: float) -> np.ndarray:
    """imagecorruptions' ``clipped_zoom`` along one axis of length n as a matrix [round(ch z), n]:
    centre crop of ch = ceil(n / zoom), then scipy.ndimage.zoom(order=1) (weights taken from
    scipy itself, zooming an identity matrix). The result is not cropped back to n."""
    from scipy.ndimage import zoom as scizoom

    ch = int(np.ceil(n / float(zoom)))
    top = (n - ch) // 2
    z = scizoom(np.eye(ch), (zoom, 1), order=1)
    m = np.zeros((z.shape[0], n))
    m[:, top:top + ch] = z
    return m


@functools.lru_cache(maxsize=32)
def _zoom_operator_cpu(h: int, w: int, severity: int) -> torch.Tensor:
    """(I + sum_z R_z (x) C_z) / (len(zooms) + 1) as a sparse CSR matrix [h w, h w] (float32)."""
    import scipy.sparse as sp

    zooms = ZOOM_BLUR[severity - 1]
    total = sp.identity(h * w, format="csr")
    for z in zooms:
        r = sp.csr_matrix(clipped_zoom_matrix(h, float(z))[:h])
        c = sp.csr_matrix(clipped_zoom_matrix(w, float(z))[:w])
        total = total + sp.kron(r, c, format="csr")
    total = (total / (len(zooms) + 1)).tocsr()
    total.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(total.indptr.astype(np.int64)),
                                       torch.from_numpy(total.indices.astype(np.int64)),
                                       torch.from_numpy(total.data.astype(np.float32)), size=total.shape,
                                       check_invariants=True)


@functools.lru_cache(maxsize=None)
def _zoom_flat(severity: int) -> torch.Tensor:
    """The reference's float32 arithmetic on a flat image: layers equal to x are summed one by
    one into ``out``, then (x + out) / (len(zooms) + 1), clipped, times 255."""
    x = (np.arange(256) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    zooms = ZOOM_BLUR[severity - 1]
    for _ in zooms:
        out += x
    return _tie_table(np.clip((x + out) / (len(zooms) + 1), 0, 1) * 255)


def _zoom_blur(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, c, h, w = x8.shape
    op = _on_device(("zoom", h, w, severity), x8.device, lambda: _zoom_operator_cpu(h, w, severity))
    y = torch.sparse.mm(op, x8.view(n * c, h * w).T.float()).T.contiguous().view(n, c, h, w)  # grey levels
    return _resolve_ties(y, _on_device(("zoom_flat", severity), x8.device, lambda: _zoom_flat(severity)))


# ----------------------------------------------------------------------------------------------
# weather


@functools.lru_cache(maxsize=64)
def _clipped_zoom_matrix_t(n: int, zoom: float, device: str) -> torch.Tensor:
    return torch.tensor(clipped_zoom_matrix(n, zoom), dtype=torch.float32, device=device)


def _snow_crop(n: int, zoom: float) -> tuple[int, int]:
    """First index and length of the centre crop that imagecorruptions' clipped_zoom enlarges."""
    length = int(np.ceil(n / float(zoom)))
    return (n - length) // 2, length


def _snow_apply(x: torch.Tensor, severity: int, field: torch.Tensor, angles: np.ndarray) -> torch.Tensor:
    """field: [N, H, W] ~ N(c0, c1^2) (the reference's snow_layer before zooming); only its centre
    crop reaches the image (``_snow_from_crop``)."""
    zoom = float(SNOW[severity - 1][2])
    (top, rows), (left, cols) = _snow_crop(x.shape[-2], zoom), _snow_crop(x.shape[-1], zoom)
    return _snow_from_crop(x, severity, field[:, top:top + rows, left:left + cols], angles)


def _snow_from_crop(x: torch.Tensor, severity: int, crop: torch.Tensor, angles: np.ndarray) -> torch.Tensor:
    """Snow from the centre crop [N, ceil(H / zoom), ceil(W / zoom)] of the random field: zoomed
    (clipped_zoom), thresholded, motion-blurred, then composed with the image block by block
    while the block is in cache; returns uint8."""
    c = SNOW[severity - 1]
    h, w = x.shape[-2:]
    (top, rows), (left, cols) = _snow_crop(h, float(c[2])), _snow_crop(w, float(c[2]))
    rz = _clipped_zoom_matrix_t(h, float(c[2]), str(x.device))[:, top:top + rows]
    cz = _clipped_zoom_matrix_t(w, float(c[2]), str(x.device))[:, left:left + cols]
    layer = torch.matmul(rz, torch.matmul(crop.float(), cz.T))  # clipped_zoom: [N, Ho, Wo]
    layer = layer.mul_(layer >= c[3]).clamp_(0, 1)  # below the threshold: 0 (a product: masked_fill_ is slow)
    if _kernels(x):
        out = torch.empty(x.shape, dtype=torch.uint8)
        _cpu_kernels().snow_compose(x.numpy(), layer[:, None].numpy(), *_kernel_taps(c[4], c[5], angles, *layer.shape[-2:]),
                                    c[6], out.numpy())
        return out

    def compose(blurred: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        snow_layer = blurred.mul_(255).round_().div_(255)[..., :h, :w]  # np.round (half to even) -> uint8 -> /255
        snow_layer = snow_layer + torch.flip(snow_layer, dims=(-2, -1))  # + np.rot90(snow_layer, k=2)
        xb = x.index_select(0, images)
        grey = (xb[:, 0:1] * 0.299).add_(xb[:, 1:2] * 0.587).add_(xb[:, 2:3] * 0.114)  # cv2 RGB2GRAY
        bright = torch.maximum(xb, grey.mul_(1.5).add_(0.5))
        return _finalise(bright.mul_(1 - c[6]).add_(xb, alpha=c[6]).add_(snow_layer))

    return _motion_blur_apply(layer[:, None], c[4], c[5], angles, finish=compose)


def snow(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The random field is drawn only where it reaches the image (the centre crop)."""
    c = SNOW[severity - 1]
    n, _, h, w = x.shape
    rows, cols = _snow_crop(h, float(c[2]))[1], _snow_crop(w, float(c[2]))[1]
    crop = _randn((n, rows, cols), generator, x.device).mul_(c[1]).add_(c[0])
    angles = (torch.rand(n, generator=generator, dtype=torch.float64) * 90 - 135).numpy()
    return _snow_from_crop(x, severity, crop, angles)


@functools.lru_cache(maxsize=None)
def _frost_image(name: str) -> np.ndarray:
    """A shipped frost texture as uint8 RGB [H, W, 3], checked against its pinned SHA-256."""
    from PIL import Image

    path = FROST_DIR / name
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FROST_FILES[name]:
        raise RuntimeError(f"{path}: sha256 {digest} does not match the pinned {FROST_FILES[name]}")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def frost_scale(frost_shape, image_shape) -> float:
    """imagecorruptions' resize factor of a frost texture for an image (both (rows, cols))."""
    fh, fw = frost_shape[:2]
    h, w = image_shape[:2]
    if fh >= h and fw >= w:
        s = 1
    elif fh < h and fw >= w:
        s = h / fh
    elif fh >= h and fw < w:
        s = w / fw
    else:
        s = np.maximum(h / fh, w / fw)
    return s * 1.1


@functools.lru_cache(maxsize=16)
def _frost_textures_cpu(h: int, w: int) -> tuple[torch.Tensor, ...]:
    """The five textures the reference draws from, resized for an h x w image: uint8 [3, Hr, Wr].

    cv2.resize(INTER_CUBIC) is bicubic with a = -0.75 and half-pixel centres, which is torch's
    bicubic interpolation (align_corners=False); computed in float64 and rounded."""
    out = []
    for name in list(FROST_FILES)[:N_FROST_USED]:
        img = _frost_image(name)
        s = frost_scale(img.shape, (h, w))
        size = (int(np.ceil(img.shape[0] * s)), int(np.ceil(img.shape[1] * s)))
        t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
        r = F.interpolate(t, size=size, mode="bicubic", align_corners=False)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8)[0].contiguous())
    return tuple(out)


def _frost_textures(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    if device.type == "cpu":
        return _frost_textures_cpu(h, w)
    key = ("frost", h, w, str(device))
    if key not in _DEVICE_CACHE:
        _DEVICE_CACHE[key] = tuple(t.to(device) for t in _frost_textures_cpu(h, w))
    return _DEVICE_CACHE[key]


@functools.lru_cache(maxsize=None)
def _frost_lut_cpu(severity: int) -> torch.Tensor:
    """uint8 [256 * 256]: np.uint8(np.clip(c0 * k + c1 * f, 0, 255)) for pixel k, texture f
    (the reference's float64 arithmetic, tabulated)."""
    c0, c1 = FROST[severity - 1]
    k, f = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    return torch.from_numpy(np.uint8(np.clip(c0 * k + c1 * f, 0, 255)).reshape(-1))


@functools.lru_cache(maxsize=None)
def _frost_flat_cpu(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """The textures of ``_frost_textures_cpu`` concatenated flat (uint8), the flat offsets of an
    h x w crop's pixels at (0, 0) of each texture (int32 [textures, 3 h w], texture start
    included), each texture's width (its row stride: a crop at (row0, col0) adds
    row0 * width + col0), and, for ``cpu_kernels.frost_apply``, each texture's flat start and
    height."""
    textures = _frost_textures_cpu(h, w)
    starts = np.cumsum([0] + [t.numel() for t in textures])[:-1]
    ch, row, col = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    offsets = [start + (ch * t.shape[1] + row) * t.shape[2] + col for start, t in zip(starts, textures)]
    return (torch.cat([t.reshape(-1) for t in textures]),
            torch.from_numpy(np.stack(offsets).reshape(len(textures), -1).astype(np.int32)),
            np.array([t.shape[2] for t in textures]), starts.astype(np.int64),
            np.array([t.shape[1] for t in textures]))


def _frost_apply(x8: torch.Tensor, severity: int, idx: np.ndarray, row0: np.ndarray, col0: np.ndarray) -> torch.Tensor:
    """np.clip(c0 * x8 + c1 * crop, 0, 255) on the 0..255 scale (exact, by table), on [0, 1].
    Every image's crop is gathered from the flat textures in one index (texture offsets + crop
    corner), then the table is looked up at 256 x8 + crop."""
    n, _, h, w = x8.shape
    flat, offsets = (_on_device(("frost_flat", h, w, i), x8.device, lambda i=i: _frost_flat_cpu(h, w)[i])
                     for i in range(2))
    widths = _frost_flat_cpu(h, w)[2]
    lut = _on_device(("frost", severity), x8.device, lambda: _frost_lut_cpu(severity))
    if _kernels(x8):
        starts, heights = _frost_flat_cpu(h, w)[3:]
        return torch.from_numpy(_cpu_kernels().frost_apply(
            x8.numpy(), flat.numpy(), starts, heights, widths, np.asarray(idx, np.int64), np.asarray(row0, np.int64),
            np.asarray(col0, np.int64), lut.numpy(), np.empty(x8.shape, np.uint8)))
    corner = torch.from_numpy((row0 * widths[idx] + col0).astype(np.int32)).to(x8.device)
    where = offsets.index_select(0, torch.from_numpy(idx.astype(np.int32)).to(x8.device)).add_(corner[:, None])
    crops = flat.index_select(0, where.view(-1)).view(x8.shape)
    index = x8.to(torch.int32).mul_(256).add_(crops)
    return lut.index_select(0, index.view(-1)).view(x8.shape)


def _frost(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x8.shape
    textures = _frost_textures(h, w, torch.device("cpu"))
    idx = torch.randint(0, N_FROST_USED, (n,), generator=generator).numpy()
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64).numpy()
    hr = np.array([t.shape[1] for t in textures])[idx]
    wr = np.array([t.shape[2] for t in textures])[idx]
    row0 = np.floor(u[:, 0] * (hr - h)).astype(np.int64)  # np.random.randint(0, Hr - h)
    col0 = np.floor(u[:, 1] * (wr - w)).astype(np.int64)
    return _frost_apply(x8, severity, idx, row0, col0)


def plasma_fractal(n: int, mapsize: int, wibbledecay: float,
                   uniform: Callable[[tuple, float, float], torch.Tensor]) -> torch.Tensor:
    """imagecorruptions' diamond-square heightmap for n images at once: float64 [n, m, m] in [0, 1].

    ``uniform(shape, low, high)`` supplies the random draws (float64), in the reference's order
    (for n = 1 the reference's ``np.random.uniform`` calls can be replayed exactly)."""
    assert mapsize & (mapsize - 1) == 0
    m = mapsize
    a = torch.zeros(n, m, m, dtype=torch.float64)
    stepsize = m
    wibble = 100.0

    def wibbledmean(array):
        return array * 0.25 + wibble * uniform(tuple(array.shape), -wibble, wibble)  # * 0.25: exactly / 4

    while stepsize >= 2:
        s, half = stepsize, stepsize // 2
        corner = a[:, 0:m:s, 0:m:s]
        square = corner + torch.roll(corner, shifts=-1, dims=1)
        square = square + torch.roll(square, shifts=-1, dims=2)
        a[:, half:m:s, half:m:s] = wibbledmean(square)
        dr = a[:, half:m:s, half:m:s]
        ul = a[:, 0:m:s, 0:m:s]
        lt = (dr + torch.roll(dr, 1, dims=1)) + (ul + torch.roll(ul, -1, dims=2))
        a[:, 0:m:s, half:m:s] = wibbledmean(lt)
        tt = (dr + torch.roll(dr, 1, dims=2)) + (ul + torch.roll(ul, -1, dims=1))
        a[:, half:m:s, 0:m:s] = wibbledmean(tt)
        stepsize //= 2
        wibble /= wibbledecay
    a = a - a.amin(dim=(1, 2), keepdim=True)
    return a / a.amax(dim=(1, 2), keepdim=True)


def _next_power_of_2(v: int) -> int:
    return 1 if v == 0 else 2 ** (v - 1).bit_length()


def _fog_apply(x: torch.Tensor, severity: int, plasma: torch.Tensor) -> torch.Tensor:
    c0 = FOG[severity - 1][0]
    h, w = x.shape[-2:]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    y = x + c0 * plasma[:, None, :h, :w].to(x)
    return y * max_val / (max_val + c0)


def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, c, h, w = x.shape
    mapsize = _next_power_of_2(int(max(h, w, c)))

    levels = mapsize.bit_length() - 1  # the fractal's levels, 3 draws each of (m / stepsize)^2 per image
    sizes = [(1 << level) ** 2 for level in range(levels) for _ in range(3)]
    uniforms = torch.rand((n, sum(sizes)), generator=generator)
    if _kernels(x):
        return torch.from_numpy(_cpu_kernels().fog_apply(x.numpy(), uniforms.numpy(), mapsize, float(FOG[severity - 1][1]),
                                                      float(FOG[severity - 1][0]), np.empty(x.shape, np.uint8)))
    draw = iter(uniforms.double().split(sizes, dim=1))

    def uniform(shape, low, high):  # the next block of draws (float32 uniforms, 24-bit)
        return next(draw).view(shape).mul(high - low).add_(low)

    plasma = plasma_fractal(n, mapsize, FOG[severity - 1][1], uniform)
    return _fog_apply(x, severity, plasma.to(x.device))


# hsv2rgb: which of (v, p, mid) each output channel takes in sectors 0..5, where mid is q in odd
# sectors and t in even ones: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q).
_HSV_SECTOR_PICK = ((0, 2, 1), (2, 0, 1), (1, 0, 2), (1, 2, 0), (2, 1, 0), (0, 1, 2))


@functools.lru_cache(maxsize=None)
def _brightness_tables_cpu(severity: int) -> tuple[torch.Tensor, ...]:
    """What rgb2hsv -> V + c -> hsv2rgb computes from a pixel's maximum M and minimum m alone,
    tabulated in the reference's float64 arithmetic (k = k8 / 255.):
    levels float64 [256] (k8 / 255.), v8 uint8 [256] (the output channel that takes v'),
    v' float64 [256] (clip(M + c, 0, 1)), delta float64 [256 * 256] (M - m; 1 where M = m: the
    hue numerator is then 0 and the saturation 0, so every channel becomes v' whatever the hue),
    s float64 [256 * 256] (delta / M, 0 where M = m), p8 uint8 [256 * 256] (np.uint8(v' (1 - s) 255))."""
    c = BRIGHTNESS[severity - 1]
    levels = np.arange(256) / 255.0
    v_new = np.clip(levels + c, 0, 1)
    big, small = np.meshgrid(levels, levels, indexing="ij")  # [max, min]
    delta = big - small
    colour = delta > 0  # (entries with min > max are never looked up)
    s = np.where(colour, delta / np.where(colour, big, 1.0), 0.0)
    p = v_new[:, None] * (1 - s)
    as_u8 = lambda v: torch.from_numpy((v * 255).astype(np.int32).astype(np.uint8))  # noqa: E731
    return (torch.from_numpy(levels), as_u8(v_new), torch.from_numpy(v_new),
            torch.from_numpy(np.where(colour, delta, 1.0).reshape(-1)), torch.from_numpy(s.reshape(-1)),
            as_u8(p.reshape(-1)))


def _brightness(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """skimage.color.rgb2hsv -> V = clip(V + c, 0, 1) -> hsv2rgb, bit for bit as the reference's
    float64 arithmetic. Everything that depends only on a pixel's maximum and minimum (v', p,
    saturation, delta) comes from float64 tables (``_brightness_tables_cpu``); the hue and the
    sector's middle value (q or t) are computed per pixel in float64, operation by operation as
    skimage does, on the two channels the hue formula uses (selected on uint8 values first)."""
    levels, v8_of, v_new_of, delta_of, s_of, p8_of = (
        _on_device(("brightness", severity, i), x8.device, lambda i=i: _brightness_tables_cpu(severity)[i])
        for i in range(6))
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().brightness_apply(
            x8.numpy(), levels.numpy(), v8_of.numpy(), v_new_of.numpy(), delta_of.numpy(), s_of.numpy(),
            p8_of.numpy(), np.empty(x8.shape, np.uint8)))
    r, g, b = x8[:, 0], x8[:, 1], x8[:, 2]
    big = torch.maximum(torch.maximum(r, g), b)
    small = torch.minimum(torch.minimum(r, g), b)
    # skimage's hue: red max (g - b) / delta; green max 2 + (b - r) / delta; blue max
    # 4 + (r - g) / delta, later cases overriding earlier ones where channels tie for the maximum
    blue = (b == big).view(torch.uint8).neg_()  # 0xFF masks (torch.where is slow on the CPU)
    green = (g == big).view(torch.uint8).neg_() & ~blue
    red = ~(blue | green)
    first = (r & blue) | (b & green) | (g & red)
    second = (g & blue) | (r & green) | (b & red)
    key = big.to(torch.int32).mul_(256).add_(small).view(-1)
    shape = big.shape
    hue = levels.index_select(0, first.view(-1).to(torch.int32))
    hue.sub_(levels.index_select(0, second.view(-1).to(torch.int32))).div_(delta_of.index_select(0, key))
    hue.add_(((blue & 4) | (green & 2)).view(-1).to(hue.dtype))  # + 4 (blue), + 2 (green), + 0 (red: exact)
    hue = hue.div_(6.0)
    hue = hue.add_(hue < 0).mul_(6)  # (h / 6) % 1 for h in [-1, 5], then * 6 (hsv2rgb)
    sector = torch.floor(hue)
    f = hue.sub_(sector)
    sector = sector.to(torch.int32).remainder_(6)
    # f in odd sectors (q), 1 - f in even ones (t), as f * 1 + 0 or f * -1 + 1 (both exact)
    odd = (sector & 1).to(f.dtype)
    f = f.mul_(odd * 2 - 1).add_(1 - odd)
    big32 = big.reshape(-1).to(torch.int32)
    mid = f.mul_(s_of.index_select(0, key)).neg_().add_(1).mul_(v_new_of.index_select(0, big32))  # q or t
    # np.uint8(... * 255) of the three candidates (v', p, mid), then each channel picks one by sector
    m = big.numel()
    values = torch.cat((v8_of.index_select(0, big32), p8_of.index_select(0, key),
                        mid.mul_(255).to(torch.int32).to(torch.uint8)))
    ar = torch.arange(m, dtype=torch.int32, device=x8.device)
    out = torch.empty_like(x8)
    for channel in range(3):
        base = torch.tensor([row[channel] * m for row in _HSV_SECTOR_PICK], dtype=torch.int32, device=x8.device)
        out[:, channel] = values.index_select(0, base.index_select(0, sector).add_(ar)).view(shape)
    return out


# ----------------------------------------------------------------------------------------------
# digital


def _contrast(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """(x8 - mean) c + mean per image and channel, as a lookup table computed in float64."""
    c = CONTRAST[severity - 1]
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().contrast_apply(x8.numpy(), c, np.empty(x8.shape, np.uint8)))
    n, ch, h, w = x8.shape
    k = x8.view(n * ch, h * w)
    means = (k.sum(dim=1, dtype=torch.float64) / 255.0 / (h * w))[:, None]
    levels = torch.arange(256, dtype=torch.float64, device=x8.device)[None] / 255.0
    lut = ((levels - means) * c + means).clamp_(0, 1).mul_(255).to(torch.uint8)  # [N*C, 256]
    return torch.gather(lut, 1, k.to(torch.int64)).view(n, ch, h, w)


def _elastic_smooth(field: torch.Tensor, sigma_h: float, sigma_w: float) -> torch.Tensor:
    """skimage.filters.gaussian(field, (sigma_h, sigma_w), mode='reflect', truncate=3) for
    fields [N, H, W] (banded matrices; faster than convolutions at this size)."""
    h, w = field.shape[-2:]
    wh = tuple(float(v) for v in _scipy_gaussian_kernel(sigma_h, 3.0))
    ww = tuple(float(v) for v in _scipy_gaussian_kernel(sigma_w, 3.0))
    mh = _filter_matrix_t(h, wh, "reflect", str(field.device), field.dtype)
    mw = _filter_matrix_t(w, ww, "reflect", str(field.device), field.dtype)
    return torch.matmul(mh, torch.matmul(field, mw.T))


_GATHER_BLOCK = 32  # images per block of the elastic gathers (the padded block stays in cache)


def _elastic_apply(x: torch.Tensor, severity: int, ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    """ux, uy: [N, H, W] uniform in +-0.005 H (the reference's two np.random.uniform draws, dx
    first). Displacements are smoothed and scaled as the reference (then float32, as it casts);
    scipy's map_coordinates(order=1, mode='reflect') is linear interpolation of the reflected
    extension of the image: the integer part i + floor(d) and the fraction d - floor(d) are
    exact in float32, and the interpolation is evaluated as lerps, exact on flat regions (as the
    reference's float64 weights are after rounding to float32)."""
    alpha = ELASTIC_ALPHA[severity - 1]
    n, c, h, w = x.shape
    dx = _elastic_smooth(ux.float(), h * 0.01, w * 0.01).mul_(alpha)
    dy = _elastic_smooth(uy.float(), h * 0.01, w * 0.01).mul_(alpha)
    if _kernels(x):
        return torch.from_numpy(_cpu_kernels().elastic_apply(x.numpy(), dx.numpy(), dy.numpy(), np.empty(x.shape, np.uint8)))
    fx, fy = torch.floor(dx), torch.floor(dy)
    tx, ty = dx.sub_(fx)[:, None], dy.sub_(fy)[:, None]  # fractions, [N, 1, H, W]
    pad = int(max(float(fx.abs().max()), float(fy.abs().max()))) + 2
    pad = min(pad, h - 1, w - 1)
    hp, wp = h + 2 * pad, w + 2 * pad
    # flat index of the top-left neighbour of each output pixel in its padded image
    rows = fy.to(torch.int32).add_(torch.arange(h, device=x.device, dtype=torch.int32)[:, None] + pad)
    cols = fx.to(torch.int32).add_(torch.arange(w, device=x.device, dtype=torch.int32)[None, :] + pad)
    pix = rows.clamp_(0, hp - 2).mul_(wp).add_(cols.clamp_(0, wp - 2))[:, None]  # [N, 1, H, W]
    out = torch.empty_like(x)
    plane = torch.arange(_GATHER_BLOCK * c, device=x.device, dtype=torch.int32).view(-1, c, 1, 1) * (hp * wp)
    for start in range(0, n, _GATHER_BLOCK):
        stop = min(start + _GATHER_BLOCK, n)
        flat = symmetric_pad(x[start:stop], pad, pad).reshape(-1)  # scipy's 'reflect'; [b, C, Hp, Wp] flattened
        idx = (pix[start:stop] + plane[:stop - start]).view(-1)
        shape = (stop - start, c, h, w)

        def tap(offset):
            return flat[offset:].index_select(0, idx).view(shape)

        top = torch.lerp(tap(0), tap(1), tx[start:stop])
        bottom = torch.lerp(tap(wp), tap(wp + 1), tx[start:stop])
        torch.lerp(top, bottom, ty[start:stop], out=out[start:stop])
    return out


def elastic_transform(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform displacement fields from 16-bit uniforms (65,536 levels; smoothed afterwards)."""
    n, _, h, w = x.shape
    m = h * 0.005  # the reference uses shape[0] for both max_dx and max_dy
    words = _random_int16(2 * n * h * w, generator, x.device).view(2, n, h, w)
    if _kernels(x):
        (ci, cw), (ri, rw) = _banded(w, w * 0.01), _banded(h, h * 0.01)
        fields = _cpu_kernels().elastic_fields(words.numpy(), m, ELASTIC_ALPHA[severity - 1], ci, cw, ri, rw,
                                            np.empty((2, n, h, w), np.float32))
        return torch.from_numpy(_cpu_kernels().elastic_apply(x.numpy(), fields[0], fields[1], np.empty(x.shape, np.uint8)))
    u = words.float().add_(32768.5).mul_(2 * m / U16).sub_(m)  # -32768 .. 32767 -> +-m
    return _elastic_apply(x, severity, u[0], u[1])


@functools.lru_cache(maxsize=16)
def _banded(n: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The non-zeros of ``_elastic_smooth``'s float32 [n, n] filter matrix, per row in ascending
    column order (index int64 and weight float32 [n, K]; rows with fewer pad with weight 0)."""
    weights = tuple(float(v) for v in _scipy_gaussian_kernel(sigma, 3.0))
    m = _filter_matrix_t(n, weights, "reflect", "cpu", torch.float32).numpy()
    k = int((m != 0).sum(axis=1).max())
    index, weight = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for j in range(n):
        nz = np.flatnonzero(m[j])
        index[j, :len(nz)], weight[j, :len(nz)] = nz, m[j, nz]
    return index, weight


def _pil_box_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the BOX filter: a dense
    [in_size, out_size] matrix of the 22-bit fixed-point weights."""
    support_base = 0.5  # box filter support
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support_base * filterscale
    m = np.zeros((in_size, out_size), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [1.0 if -0.5 < (x + xmin - center + 0.5) * ss <= 0.5 else 0.0 for x in range(xmax)]
        ww = sum(k)
        for x in range(xmax):
            v = k[x] / ww if ww != 0.0 else k[x]
            m[x + xmin, xx] = int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22))
    return m


def _pil_nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's NEAREST resize source index per output pixel (ImagingScaleAffine)."""
    a = in_size / out_size
    xo = a * 0.5
    idx = np.empty(out_size, dtype=np.int64)
    for x in range(out_size):
        idx[x] = -1 if xo < 0.0 else int(xo)
        xo += a
    return np.clip(idx, 0, in_size - 1)


@functools.lru_cache(maxsize=64)
def _pixelate_ops(h: int, w: int, severity: int, device: str):
    """(0/1 box matrices, per-output fixed-point weight, nearest indices) for both axes.

    Box weights are all equal within an output pixel (1/count), so sum(in * k) = k * sum(in):
    the sums of at most a few uint8 values are exact in float32 and the fixed-point step
    (k * S + 2**21) >> 22 fits int32."""
    c = PIXELATE[severity - 1]
    ops = []
    for n, m in ((w, int(w * c)), (h, int(h * c))):
        kk = _pil_box_coefficients(n, m)
        weight = kk.max(axis=0)
        assert np.all((kk == 0) | (kk == weight[None, :])), "BOX weights are equal per output"
        ops += [torch.tensor(kk > 0, dtype=torch.float32, device=device),
                torch.tensor(weight, dtype=torch.int32, device=device),
                torch.tensor(_pil_nearest_index(m, n), device=device)]
    return ops


@functools.lru_cache(maxsize=64)
def _pixelate_runs(h: int, w: int, severity: int) -> tuple[np.ndarray, ...]:
    """First input index and number of inputs of each output's box (contiguous runs), columns
    then rows, from ``_pixelate_ops``' 0/1 box matrices [in, out], for ``cpu_kernels.pixelate_apply``."""
    bw, _, _, bh, _, _ = _pixelate_ops(h, w, severity, "cpu")
    boxes = [box.numpy() > 0 for box in (bw, bh)]
    return tuple(a.astype(np.int64) for b in boxes for a in (b.argmax(axis=0), b.sum(axis=0)))


def _pixelate(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """PIL ``resize(BOX)`` to int(c w) x8 int(c h) then ``resize(NEAREST)`` back, bit-exact:
    horizontal then vertical pass, each (sum(in * k) + 2**21) >> 22 clipped to 0..255 (Pillow's
    8-bit resampling), then nearest-neighbour upsampling with Pillow's pixel-centre convention."""
    bw, kw, iw, bh, kh, ih = _pixelate_ops(x8.shape[2], x8.shape[3], severity, str(x8.device))
    if _kernels(x8):
        cf, cc, rf, rc = _pixelate_runs(x8.shape[2], x8.shape[3], severity)
        return torch.from_numpy(_cpu_kernels().pixelate_apply(x8.numpy(), cf, cc, kw.numpy(), rf, rc, kh.numpy(), iw.numpy(),
                                                           ih.numpy(), np.empty(x8.shape, np.uint8)))
    half = 1 << 21
    a = torch.matmul(x8.float(), bw).to(torch.int32).mul_(kw).add_(half).bitwise_right_shift_(22).clamp_(0, 255)
    a = torch.matmul(bh.T, a.float()).to(torch.int32).mul_(kh[:, None]).add_(half).bitwise_right_shift_(22).clamp_(0, 255)
    return a.to(torch.uint8).index_select(2, ih).index_select(3, iw)


def _jpeg_compression(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """PIL ``save(JPEG, quality=c)`` + decode, through torchvision's libjpeg (on the CPU; the
    output is identical to PIL's for RGB images). torchvision 0.29 deprecates its image codecs
    (in favour of TorchCodec); where they are missing, PIL itself is used, image by image."""
    q = JPEG_QUALITY[severity - 1]
    images = x8.cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import decode_jpeg, encode_jpeg

            decoded = decode_jpeg(encode_jpeg(list(images), quality=q))
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - future torchvision
        decoded = [torch.from_numpy(_pil_jpeg(im.permute(1, 2, 0).numpy(), q)).permute(2, 0, 1) for im in images]
    return torch.stack(decoded).to(x8.device)


def _pil_jpeg(image_hwc: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_hwc).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as im:
        return np.array(im)


# ----------------------------------------------------------------------------------------------
# registry and entry point


def _uint8_native(core: Callable, name: str) -> Callable:
    """The registry's float-in function for a corruption implemented on uint8 images: ``core(x8,
    severity, generator)``; ``corrupt`` calls ``core`` directly (``.uint8_impl``), skipping the
    conversions."""

    def corruption(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
        return core(_uint8_of(x), severity, generator)

    corruption.__name__ = corruption.__qualname__ = name
    corruption.__doc__ = core.__doc__
    corruption.uint8_impl = core
    return corruption


shot_noise = _uint8_native(_shot_noise, "shot_noise")
impulse_noise = _uint8_native(_impulse_noise, "impulse_noise")
defocus_blur = _uint8_native(_defocus_blur, "defocus_blur")
glass_blur = _uint8_native(_glass_blur, "glass_blur")
motion_blur = _uint8_native(_motion_blur, "motion_blur")
zoom_blur = _uint8_native(_zoom_blur, "zoom_blur")
frost = _uint8_native(_frost, "frost")
brightness = _uint8_native(_brightness, "brightness")
contrast = _uint8_native(_contrast, "contrast")
pixelate = _uint8_native(_pixelate, "pixelate")
jpeg_compression = _uint8_native(_jpeg_compression, "jpeg_compression")

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
    duration of the call and restored. The result does not depend on ``workers``. See the module docstring for semantics and agreement with
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
