"""Image manipulations of Geirhos et al. 2018 ("Generalisation in humans and deep neural networks",
NeurIPS 2018, Fig. 3), batched in torch, with accuracy and response entropy per level.

Images are float tensors ``[N, C, H, W]`` in [0, 1] with ``C`` = 1 or 3, on any device. Every
manipulation is ``fn(x, level, generator=None, **options) -> tensor`` of the same shape. Random ones
draw from the ``torch.Generator`` they are given (on its own device; a CPU generator gives the same
images on CPU and GPU) and draw nothing at their identity level.

Sources (facts only; the code is written anew): the paper's methods, and the authors' repository
github.com/rgeirhos/generalisation-humans-DNNs, ``code/image_manipulation.py``, ``code/wrapper.py``
and ``data-analysis/plotting_results/plotting_parameters.R`` (the levels), and for the eidolons the
Eidolon toolbox github.com/gestaltrevision/Eidolon (``eidolon/{picture,scalespaces,noise,helpers}.py``)
with its pull request #1 ("Fixed bug in partial coherence"), which Geirhos et al. say they applied
(as in github.com/f-amerehi/Eidolon); Koenderink et al. 2017, "Eidolons: novel stimuli for vision
research", JoV 17(2):7.

What Geirhos et al. did, and what is done here
----------------------------------------------
Greyscale conversion is skimage's ``rgb2gray`` weights (0.2125 R + 0.7154 G + 0.0721 B), the one
their code uses. Every experiment except colour, false colour and eidolon converts to greyscale
first, and the stimulus is that grey image in all channels; so here too (``grey=True``, the
default). ``grey=False`` applies the same operation to every channel instead (then the identity
level returns the input itself); the registry uses the Geirhos default.

Registry levels (Geirhos et al.'s conditions; ``name: levels [identity level]``):

- greyscale: 0 = colour, 1 = greyscale [0]
- contrast: 1.0, .5, .3, .15, .1, .05, .03, .01, i.e. 100 ... 1 % [1.0]
- uniform_noise: width 0, .03, .05, .1, .2, .35, .6, .9 [0]
- low_pass: Gaussian std 0, 1, 3, 5, 7, 10, 15, 40 px of a 224-px image [0]
- high_pass: Gaussian std inf, 3, 1.5, 1, .7, .55, .45, .4 px of a 224-px image [inf]
- phase_noise: width 0, 30, 60, 90, 120, 150, 180 degrees [0]
- power_equalisation: 0 = original, 1 = equalised [0]
- rotation: 0, 90, 180, 270 degrees, anticlockwise [0]
- false_colour: 0 = true colour, 1 = opponent colour [0]
- eidolon: reach 1, 2, 4, 8, 16, 32, 64, 128 px of a 256-px image, coherence 1, grain 10
  (their "Eidolon I"); [0], which is not one of their levels

Operations:

- contrast c: grey, then ``(1 - c) / 2 + c * g`` -- scaled around 0.5 (not the image mean), so the
  output's std is c times the grey image's std. No clipping needed.
- uniform noise w: grey, contrast reduced to 30 % (Geirhos' noise experiment; option ``contrast_level``),
  plus i.i.d. U[-w, w] per pixel (one plane shared by the channels), clipped to [0, 1]. Its level-0
  image is therefore the 30 %-contrast grey image, not the input.
- low-pass s: grey, Gaussian blur (sampled kernel, radius ``int(4 sigma + 0.5)``, as scipy's
  ``gaussian_filter``) with the border padded by the constant ``background`` = 0.4423 (their mean
  pixel value over all images), clipped. Their images were 224 x 224, so sigma in pixels is
  ``s * H / 224`` vertically and ``s * W / 224`` horizontally (``reference_size``).
- high-pass s: grey g, ``g - lowpass(g)`` (same blur and scaling), shifted so its mean is exactly
  ``background`` (their "add mean of old image": ``bg_grey - mean``), clipped. s = inf is the
  unfiltered grey image (their "Inf" control; scipy cannot filter with an infinite std).
- phase noise w: grey, 2-D FFT, phases shifted by uniform random amounts in [-w, w] degrees,
  inverse FFT, real part, clipped. Two ways (option ``method``; config
  ``brain_likeness.manipulations.phase_noise_method``):

  * ``"authors"`` (default): their ``scramble_phases`` (to 1e-12 in float64, 3e-7 in float32 on
    the parity fixture, same draws). On the centred (fftshifted) spectrum, less its first row and
    column for an even size (Nyquist), i.e. an odd-sized block centred on DC, flattened row by
    row (L entries), the first L // 2 entries get +s_i and the last L // 2 entries -s_i, in the
    same order (i = 0 .. L // 2 - 1); DC and the Nyquist row and column keep their phase. The
    conjugate of entry i is entry L - 1 - i, so the shifts are not paired as conjugates: f and -f
    get independent shifts a, b, and the real part keeps only ``(1 + cos(a + b)) / 2`` of that
    pair's power, on average ``(1 + sinc(w)^2) / 2`` with ``sinc(w) = sin(w) / w``: 0.956 /
    0.842 / 0.703 / 0.585 / 0.518 / 0.500 at 30 / 60 / 90 / 120 / 150 / 180 degrees. Measured (AC
    power of the real part before clipping, over the original's): 0.957 / 0.844 / 0.705 / 0.587 /
    0.516 / 0.495 on 16 random 224-px images, 0.96 / 0.86 / 0.73 / 0.62 / 0.56 / 0.54 on their
    224-px test photograph (20 draws; a few strong low frequencies dominate it); RMS contrast
    falls by the square root. Their human data were collected on such images. On the demo's
    models (9: 3 arms x 3 seeds, 1000 synthetic10 test images of 32 px) accuracy under
    ``authors`` minus under ``hermitian`` was +0.006 / +0.028 / +0.065 / +0.029 / -0.018 / -0.018
    at 30 ... 180 degrees (mean over the models; per model -0.07 ... +0.14). Random numbers: one
    ``torch.rand`` of shape ``[N, L // 2]`` per call (their ``np.random.random(L // 2)`` per
    image), ``s = (u - 0.5) * 2 * w / 180 * pi``. Their code needs even sizes (for others their
    shift arrays do not fit); here an odd dimension keeps all its rows (columns): the same
    centred block.
  * ``"hermitian"``: shifts drawn once per conjugate pair (phase of -f = minus the phase of f), so
    the spectrum stays Hermitian and the amplitudes -- all the power -- are kept; self-conjugate
    frequencies (DC, Nyquist) keep their phase, so the mean is kept. Random numbers: one
    ``torch.rand`` of shape ``[N, 1, H, W]``.
- power equalisation: grey, amplitude spectrum replaced by the mean amplitude spectrum, phase kept,
  clipped. Geirhos used the mean over all their stimulus images (a fixed file); here
  ``mean_amplitude=`` (see :func:`mean_amplitude_spectrum`), which :func:`manipulation_accuracy`
  computes over the whole test set so the result does not depend on the batching; without it, the
  mean over the batch.
- rotation: grey, ``torch.rot90`` (anticlockwise; their ``rotate90`` is the same); 90/270 need
  square images.
- false colour: their ``false_colour``: pixel values to linear monitor output, to cone (LMS)
  activations with their matrix M, minus their white point (``M @ (.5, .5, .5)`` to 1e-8), to
  DKL opponent channels with their matrix N (Brainard 1996), the two chromatic channels (L-M and
  S-(L+M)) negated, back, clipped to [0, 1], back to pixel values. Pixel values go to linear
  output through their measured monitor table (:data:`MONITOR_TABLE`, their
  ``x_gamma_function.npy``, 256 entries for the 8-bit values) and back by its nearest entry, so
  the input is read as 8-bit values (rounded; their code asserts 8-bit input) and the output is
  8-bit values (k / 255). The linear map runs in float64 (float32 on MPS) and reproduces their
  ``false_colour`` exactly (every 8-bit value of the parity fixture). Earlier versions used the
  power law ``x ** 2`` (the least-squares fit to the table, RMS 0.018) instead; on their 224-px
  test photograph (``code/test_image.JPEG``) that was up to 43 grey levels off their output,
  10.5 % of values by more than one level; it is not kept. The linear-space map is an involution
  (applied twice = identity) as long as nothing clips; with the 8-bit rounding in between, twice
  is the identity to a grey level on mild colours, but the rounding of a bright channel can move
  a dark one by up to 30 grey levels (the table is flat near 0). Greyscale (C = 1) inputs have no
  colour to invert: the identity. Grey pixels stay grey, exactly.
- eidolon: see :func:`eidolon`.

Eidolon (partially coherent disarray)
-------------------------------------
The toolbox algorithm as Geirhos et al. called it (``wrapper.partially_coherent_disarray``: image
resized to SZ = 256, MIN_SIGMA = 1/sqrt(2), MAX_SIGMA = SZ/4 = 64, factor sqrt(2), so 12 scale
levels sigma_k = 2^(k/2) / sqrt(2), k = 0..11, up to 32 px), rebuilt for any image size S by
working in "reference pixels" of that 256-px image: a reference pixel is S/256 of ours.

1. The grey image is embedded in a mirror-padded plane (pad S/2 each side, as the toolbox's 512 x 512
   plane for 256 px) to keep borders clean.
2. Gaussian scale space G_k (sigma_k reference px) and its DOG slices ``G_k - G_{k+1}``, the last
   slice being G_11 itself, so the slices add up to the image.
3. For each of the two axes, displacement fields per slice: the *coherent* stack is
   ``C_k = sum_{j >= k} P_j`` with ``P_j`` = white noise blurred at sigma_j times sigma_j / MAX_SIGMA
   (coarse slices drag the finer ones along); the *incoherent* stack ``I_k`` is independent white
   noise blurred at ``grain``; the field of slice k is ``(1 - coherence) I_k + coherence C_k`` (PR #1;
   the unfixed toolbox has ``coherence * I_k + C_k``).
4. Each slice is resampled at ``position + reach * field`` (clamped to the plane), the slices are
   summed, the image is cut out and clipped to [0, 1].

Field amplitudes: the toolbox scales its white noise so that its largest value is 127.5 (about
N(0, 1) * 127.5 / 4.75 on the 512 x 512 plane, 4.75 being the mean maximum |z| of 512^2 normal
draws) and never renormalises the blurred plane (its ``c - m/v`` is ``c - (m/v)``, not
``(c - m)/v``), so a blurred plane has std 26.8 / (2 sqrt(pi) sigma) reference px: 0.118 px per unit
reach for every coherent plane P_j (the sigma / MAX_SIGMA factor cancels the 1/sigma) and
26.8 / (2 sqrt(pi) grain) for the incoherent ones. Here each blurred plane is normalised by its
exact expected std (Parseval) and given those stds in reference px, then multiplied by S / 256 to
our pixels: reach is scaled by image size, and an S-px eidolon has the statistics of the 256-px one.
At coherence 1 the finest slice moves by about 0.41 * reach reference px (std), the coarsest by 0.12.

How this differs from the toolbox (deliberately, and otherwise it follows the algorithm above):
(a) Blurs are exact Gaussian transfer functions applied by FFT on the padded plane, for every sigma
    (the toolbox convolves with a sampled Gaussian by circular FFT of the *flattened* plane, which
    shears the kernel by one row for negative column offsets); the same FFT runs at S px rather than
    after resizing to 256 px (Geirhos' wrapper resized with Lanczos and output 256 x 256).
(b) The finest slice is ``image - G_1`` instead of ``G_0 - G_1``, so the slices sum to the image and
    reach 0 is the identity; the toolbox's output lacks the detail below sigma_0 = 0.71 reference px
    (0.09 px at S = 32), i.e. it is the image blurred slightly even at reach 0.
(c) Resampling is bilinear (``grid_sample``) instead of truncation to the integer pixel below
    (which moves a pixel by one whole pixel for any negative sub-pixel displacement).
(d) Noise amplitudes are the expected values above, not renormalised by each draw's maximum; the
    toolbox's clipping of noise at +-127 (never reached after the rescaling) and 8-bit output
    quantisation are omitted; the mirror padding is S/2 on each side (the toolbox pads to the next
    power of two of 1.5 S: the same S/2 at 256 px).
(e) Greyscale is the rgb2gray weights rather than PIL's "L" (0.299, 0.587, 0.114); Geirhos fed
    greyscale images, for which the two agree.
All 12 reference scale levels are kept at any size, so on small images the finest ones are
sub-pixel (at S = 32: sigma 0.09 ... 4 px) and their slices nearly empty, as in a 256-px eidolon
shrunk to S px.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .filters import exact_fp32_convolutions

#: skimage ``rgb2gray`` weights (Rec. 709 luma), used by Geirhos et al.'s ``rgb2gray`` calls.
LUMA_WEIGHTS = (0.2125, 0.7154, 0.0721)
#: Geirhos et al.'s padding / mean grey for low- and high-pass filtering (mean pixel of their images).
BACKGROUND_GREY = 0.4423
#: Image size, in pixels, that the filter stds refer to (their 224 x 224 stimuli).
FILTER_REFERENCE_SIZE = 224
#: Contrast of the uniform-noise experiment (their images were reduced to 30 % before adding noise).
NOISE_CONTRAST = 0.3
#: Phase-noise variants: ``"authors"`` (their shift pairing, the default) and ``"hermitian"``.
PHASE_NOISE_METHODS = ("authors", "hermitian")

# Eidolon toolbox constants as Geirhos' wrapper set them.
EIDOLON_REFERENCE_SIZE = 256
_EID_MAX_SIGMA = EIDOLON_REFERENCE_SIZE / 4.0
_EID_NUM_LEVELS = int(math.ceil(2 * math.log(_EID_MAX_SIGMA) / math.log(2)))      # 12
_EID_SIGMAS = tuple((1 / math.sqrt(2)) * math.sqrt(2) ** k for k in range(_EID_NUM_LEVELS))
_EID_NOISE_STD = 127.5 / 4.75          # toolbox white noise: max |value| 127.5 over 512^2 draws


def _eid_blurred_std(sigma_ref: float) -> float:
    """Std (reference px) of the toolbox's white noise blurred by a unit-sum Gaussian of std sigma."""
    return _EID_NOISE_STD / (2.0 * math.sqrt(math.pi) * sigma_ref)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _check(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected float images in [0, 1], got {x.dtype}")
    return x


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, 1, H, W]`` luminance (skimage rgb2gray weights); C = 1 is returned as is."""
    _check(x)
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _base(x: torch.Tensor, grey: bool) -> torch.Tensor:
    """The image the manipulation works on: the grey plane (Geirhos) or all channels."""
    return to_grey(x) if grey else _check(x)


def _out(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Back to the input's channel count (a grey plane is repeated, as their ``np.dstack``)."""
    return y if y.shape[1] == x.shape[1] else y.repeat(1, x.shape[1], 1, 1)


def _draw(kind: str, shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Random numbers drawn on the generator's device (CPU by default), then moved to ``like``'s."""
    dev = generator.device if generator is not None else torch.device("cpu")
    fn = torch.rand if kind == "uniform" else torch.randn
    return fn(tuple(shape), generator=generator, device=dev, dtype=torch.float32).to(like.device, like.dtype)


def _gaussian_kernel1d(sigma: float, dtype, device) -> torch.Tensor:
    """scipy ``gaussian_filter``'s kernel: sampled, radius ``int(4 sigma + 0.5)``, unit sum."""
    r = int(4.0 * sigma + 0.5)
    if r == 0 or sigma <= 0:
        return torch.ones(1, dtype=dtype, device=device)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma_y: float, sigma_x: float, cval: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, K, H, W]``, borders padded with the constant ``cval``
    (scipy ``gaussian_filter(mode="constant")``)."""
    n, k, h, w = x.shape
    ky = _gaussian_kernel1d(sigma_y, x.dtype, x.device)
    kx = _gaussian_kernel1d(sigma_x, x.dtype, x.device)
    ry, rx = (len(ky) - 1) // 2, (len(kx) - 1) // 2
    y = F.pad(x.reshape(n * k, 1, h, w), (rx, rx, ry, ry), mode="constant", value=float(cval))
    with exact_fp32_convolutions():  # scipy's filter in float32, not TF32 on a GPU
        y = F.conv2d(y, kx.view(1, 1, 1, -1))
        y = F.conv2d(y, ky.view(1, 1, -1, 1))
    return y.reshape(n, k, h, w)


def _filter_sigmas(std: float, x: torch.Tensor, reference_size: int) -> tuple[float, float]:
    h, w = x.shape[-2:]
    return float(std) * h / reference_size, float(std) * w / reference_size


# ----------------------------------------------------------------------------------------------
# manipulations
# ----------------------------------------------------------------------------------------------

def greyscale(x: torch.Tensor, level: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Level 0: the input (colour); level 1: luminance in every channel."""
    _check(x)
    if not level:
        return x
    return _out(to_grey(x), x)


def contrast(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True
             ) -> torch.Tensor:
    """Contrast ``level`` in (0, 1] around 0.5: ``(1 - c)/2 + c * g`` (their ``adjust_contrast``)."""
    c = float(level)
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"contrast level must be in [0, 1], got {level}")
    g = _base(x, grey)
    return _out(g if c == 1.0 else (1.0 - c) / 2.0 + c * g, x)


def uniform_noise(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True,
                  contrast_level: float = NOISE_CONTRAST) -> torch.Tensor:
    """Grey, contrast ``contrast_level`` (30 %), plus U[-level, level] noise per pixel, clipped."""
    w = float(level)
    if w < 0:
        raise ValueError(f"noise width must be >= 0, got {level}")
    g = contrast(x, contrast_level, grey=grey)
    g = g[:, :1] if grey else g
    if w == 0:
        return _out(g, x)
    u = _draw("uniform", g.shape, generator, g)
    return _out((g + (2.0 * u - 1.0) * w).clamp_(0.0, 1.0), x)


def low_pass(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True,
             background: float = BACKGROUND_GREY, reference_size: int = FILTER_REFERENCE_SIZE) -> torch.Tensor:
    """Gaussian blur with std ``level * size / 224`` px, constant ``background`` padding, clipped."""
    g = _base(x, grey)
    if float(level) == 0.0:
        return _out(g, x)
    sy, sx = _filter_sigmas(level, g, reference_size)
    return _out(gaussian_blur(g, sy, sx, background).clamp_(0.0, 1.0), x)


def high_pass(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True,
              background: float = BACKGROUND_GREY, reference_size: int = FILTER_REFERENCE_SIZE) -> torch.Tensor:
    """``g - lowpass(g)`` shifted to mean ``background``, clipped; level inf: the unfiltered image."""
    g = _base(x, grey)
    if math.isinf(float(level)):
        return _out(g, x)
    if float(level) <= 0:
        raise ValueError(f"high-pass std must be > 0 (inf = unfiltered), got {level}")
    sy, sx = _filter_sigmas(level, g, reference_size)
    hp = g - gaussian_blur(g, sy, sx, background)
    hp = hp + (background - hp.mean(dim=(2, 3), keepdim=True))
    return _out(hp.clamp_(0.0, 1.0), x)


def _conjugate_index(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index of each frequency and of its conjugate (-f mod size) on the full FFT grid."""
    ky = torch.arange(h, device=device)
    kx = torch.arange(w, device=device)
    idx = ky[:, None] * w + kx[None, :]
    conj = ((-ky) % h)[:, None] * w + ((-kx) % w)[None, :]
    return idx, conj


def _hermitian_phases(n: int, h: int, w: int, width_rad: float, generator, like: torch.Tensor) -> torch.Tensor:
    """``[n, 1, h, w]`` phase shifts, U[-width, width] once per conjugate pair, odd (phi(-f) = -phi(f)),
    0 at self-conjugate frequencies."""
    u = (2.0 * _draw("uniform", (n, 1, h, w), generator, like) - 1.0) * width_rad
    idx, conj = _conjugate_index(h, w, like.device)
    u_conj = u.reshape(n, 1, h * w)[:, :, conj.reshape(-1)].reshape(n, 1, h, w)
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    return torch.where(idx < conj, u, torch.where(idx == conj, zero, -u_conj))


def _authors_block(h: int, w: int) -> tuple[int, int, int]:
    """(first row, first column, number of shifts) of Geirhos et al.'s phase-shift block: the
    fftshifted spectrum less its first (Nyquist) row / column where the size is even -- an
    odd-sized block centred on DC with L entries -- and L // 2 shifts."""
    oy, ox = 1 - h % 2, 1 - w % 2
    return oy, ox, ((h - oy) * (w - ox)) // 2


def authors_phase_shifts(shifts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[N, L // 2]`` shifts (radians) -> ``[N, 1, h, w]`` phase offsets on the *unshifted* FFT
    grid, placed as their ``shift_phases``: ``+s`` on the first L // 2 entries of the flattened
    centred block, 0 on DC, ``-s`` (same order, not reversed) on the last L // 2."""
    oy, ox, half = _authors_block(h, w)
    n = shifts.shape[0]
    if shifts.shape[-1] != half:
        raise ValueError(f"expected {half} shifts per image for {h} x {w}, got {tuple(shifts.shape)}")
    block = torch.cat([shifts, shifts.new_zeros(n, 1), -shifts], dim=1).reshape(n, 1, h - oy, w - ox)
    return torch.fft.ifftshift(F.pad(block, (ox, 0, oy, 0)), dim=(-2, -1))


def phase_noise(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True,
                method: str = "authors") -> torch.Tensor:
    """Uniform random phase shifts in [-level, level] degrees, inverse FFT's real part, clipped.
    ``method="authors"`` (default): their pairing of the shifts, which keeps only part of the power
    (0.95 ... 0.50 at 30 ... 180 degrees, see the module docstring); ``"hermitian"``: shifts
    paired as conjugates, amplitude spectrum (all the power) kept. With ``grey=False`` the same
    shifts go to every channel."""
    if method not in PHASE_NOISE_METHODS:
        raise ValueError(f"phase noise method must be one of {PHASE_NOISE_METHODS}, got {method!r}")
    g = _base(x, grey)
    width = float(level)
    if width == 0.0:
        return _out(g, x)
    n, _, h, w = g.shape
    if method == "hermitian":
        phi = _hermitian_phases(n, h, w, math.radians(width), generator, g)
    else:   # their arithmetic: (random - 0.5) * 2 * width / 180 * pi
        u = _draw("uniform", (n, _authors_block(h, w)[2]), generator, g)
        phi = authors_phase_shifts((u - 0.5) * 2 * width / 180 * math.pi, h, w)
    y = torch.fft.ifft2(torch.fft.fft2(g) * torch.polar(torch.ones_like(phi), phi)).real
    return _out(y.clamp(0.0, 1.0), x)


def mean_amplitude_spectrum(images: torch.Tensor, grey: bool = True, block_size: int = 500,
                            device="cpu") -> torch.Tensor:
    """Mean FFT amplitude spectrum ``[1, K, H, W]`` (K = 1 grey) of uint8 or [0, 1] float images."""
    total, n = None, 0
    for i in range(0, len(images), block_size):
        x = _as_float01(images[i:i + block_size]).to(device)
        a = torch.fft.fft2(_base(x, grey)).abs().sum(dim=0, keepdim=True)
        total = a if total is None else total + a
        n += len(x)
    return total / n


def power_equalisation(x: torch.Tensor, level: float, generator: torch.Generator | None = None,
                       grey: bool = True, mean_amplitude: torch.Tensor | None = None) -> torch.Tensor:
    """Level 1: every image's amplitude spectrum set to ``mean_amplitude`` (default: the batch's
    mean), phases kept, clipped. Level 0: the (grey) image."""
    g = _base(x, grey)
    if not level:
        return _out(g, x)
    f = torch.fft.fft2(g)
    amp = f.abs().mean(dim=0, keepdim=True) if mean_amplitude is None else mean_amplitude.to(g.device, g.dtype)
    if amp.shape[-2:] != g.shape[-2:]:
        raise ValueError(f"mean_amplitude {tuple(amp.shape)} does not fit images {tuple(g.shape)}")
    y = torch.fft.ifft2(torch.polar(amp.expand_as(g).contiguous(), f.angle())).real
    return _out(y.clamp(0.0, 1.0), x)


def rotation(x: torch.Tensor, level: float, generator: torch.Generator | None = None, grey: bool = True
             ) -> torch.Tensor:
    """Anticlockwise rotation by ``level`` in {0, 90, 180, 270} degrees (multiples of 90)."""
    g = _base(x, grey)
    if float(level) % 90 != 0:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {level}")
    k = int(round(float(level) / 90)) % 4
    if k % 2 and g.shape[-1] != g.shape[-2]:
        raise ValueError(f"rotation by {level} needs square images, got {tuple(g.shape[-2:])}")
    return _out(torch.rot90(g, k, dims=(2, 3)) if k else g, x)


# Geirhos et al.'s cone matrix M (monitor primaries -> LMS, Stiles & Burch 2-deg fundamentals) and
# DKL matrix N (LMS contrast -> luminance, L-M, S-(L+M); Brainard 1996), from their get_opponent_colours.
_M_CONES = np.array([[0.1619982647, 0.208049264, 0.0389347448],
                     [0.0330275785, 0.2496504557, 0.0618343518],
                     [0.0015524055, 0.0198861001, 0.1890224274]])
_N_DKL = np.array([[9.27590805, 9.27590805, 0.0],
                   [7.86421647, -9.33587662, 0.0],
                   [-3.39709047, -3.39709047, 12.16230246]])
#: Their cone activations of the white point (``cones_white_point``; = M @ (.5, .5, .5) to 1e-8).
_CONES_WHITE_POINT = np.array([0.20449114, 0.17225619, 0.10523047])
_OPPONENT_INVERSION = np.linalg.inv(_N_DKL) @ np.diag([1.0, -1.0, -1.0]) @ _N_DKL
#: Linear-RGB map of the opponent-colour inversion about the white point (linear 0.5): an involution.
FALSE_COLOUR_MATRIX = np.linalg.inv(_M_CONES) @ _OPPONENT_INVERSION @ _M_CONES
#: ... plus this offset, ``inv(M) (w - inv(N) D N w)`` with their white point w (0 to 1e-8: A's rows sum to 1).
FALSE_COLOUR_OFFSET = np.linalg.inv(_M_CONES) @ (_CONES_WHITE_POINT - _OPPONENT_INVERSION @ _CONES_WHITE_POINT)

#: Geirhos et al.'s measured monitor table: linear output (0 ... 1) of the 8-bit values 0 ... 255.
#: Numbers from github.com/rgeirhos/generalisation-humans-DNNs, ``code/x_gamma_function.npy``
#: (unchanged since commit e4ca995bbaaf372ed9c8390969112becb733a030; read at
#: 0b88343536ec21acc2d635c0e325f827111e149a), CC BY 4.0. Strictly increasing.
MONITOR_TABLE = (
    0.0, 5.9520514067794264e-06, 1.7777465915690278e-05, 2.851794393216613e-05, 4.190421101876027e-05,
    6.405542605582188e-05, 8.704693414628469e-05, 0.00012724868290474417, 0.00017237362708477283,
    0.00023227883953088393, 0.00029494035586270876, 0.00037409881490425357, 0.0004747840491798541,
    0.000577246172194518, 0.0007013805578386874, 0.0008423385103339427, 0.0010123460558229688,
    0.0012059271870219245, 0.001405846915406883, 0.0016302089103396515, 0.0018832130640527704,
    0.002156392427168383, 0.002458380635842667, 0.00278559870746411, 0.003147105985209438,
    0.0035396024074242976, 0.003955637278149357, 0.004409208226138972, 0.004889155486531571,
    0.005421331148854445, 0.005977389681067477, 0.006570945513416775, 0.007220268343562925,
    0.00781033478309993, 0.00843564487655837, 0.009082760154057267, 0.009764697109841075, 0.010482038315388926,
    0.011233896652435897, 0.01200980942987458, 0.012825378954508396, 0.01366552732532062, 0.01455581360844463,
    0.015483927711850202, 0.016441086798892786, 0.01742609572921302, 0.018462659217404156,
    0.019525696692462933, 0.020703403988998597, 0.021851316915602124, 0.02303073753931046, 0.0242606534833903,
    0.025527740048591735, 0.026834800162809917, 0.02818718031406204, 0.029568947492488333, 0.03099899750004236,
    0.03248159764994481, 0.03400035180172836, 0.03556285734596029, 0.03715559441737244, 0.03880525741056625,
    0.040515660019525945, 0.0422295004404009, 0.04412121228034246, 0.04587166928497317, 0.04768039550964062,
    0.04953533053580582, 0.05144084959416905, 0.053371158577984384, 0.055360191132716945, 0.057391666351818464,
    0.05945357064196129, 0.06156802891558306, 0.06372250811216605, 0.0659366254345786, 0.06822303283547704,
    0.07052042952820145, 0.07287230625705013, 0.07525553758651132, 0.07786430913199874, 0.08036928966960181,
    0.08291192609116282, 0.08551593829288669, 0.08816477100175159, 0.0908564378044876, 0.09361078820091118,
    0.09641780415651305, 0.09924265027468465, 0.10213421317370687, 0.10506865772345574, 0.108085659145136,
    0.1111423028640436, 0.11425452774318992, 0.11738603509810663, 0.12059199636843178, 0.12391350799370328,
    0.1269182507213393, 0.13000384741965978, 0.1330907062037593, 0.13626827968960734, 0.13945903374085122,
    0.14273342018060312, 0.14602224012598047, 0.14932494118581635, 0.1526852646924552, 0.15613500240375733,
    0.1596334547970169, 0.1631990922232419, 0.1667485072744332, 0.17038434593572452, 0.17405498158231827,
    0.17802144281905646, 0.18179123450923929, 0.18560707769747473, 0.18947612054495722, 0.1933577476680327,
    0.19734488333311775, 0.20138862811816316, 0.2054391150020216, 0.20949603120691346, 0.21365054505382375,
    0.2178631020427966, 0.22211481478578343, 0.22640394562845118, 0.23071127794298338, 0.23508558128463145,
    0.23950143102683452, 0.24409399472740714, 0.24825135466920448, 0.2525150846637387, 0.25678994662066534,
    0.261167608207951, 0.2655408909063173, 0.2699732831177737, 0.2744311968986117, 0.27901058186289873,
    0.2835213221645796, 0.2881202767748792, 0.2927337728082844, 0.29740137573940917, 0.302048767006973,
    0.3067766683725739, 0.31151830269473774, 0.3166411527700956, 0.3214458529699, 0.32625562712035827,
    0.33119873423147655, 0.3361159923625546, 0.34110904697565253, 0.34603552199113635, 0.351095092183004,
    0.3561860773361083, 0.36126560311616135, 0.366347214081415, 0.3715201342091103, 0.37663301014859474,
    0.3817988150390718, 0.3869286596303989, 0.3922838231154632, 0.39816269000905435, 0.40378243605934955,
    0.40956766167547287, 0.4152465044350898, 0.4209461258823139, 0.42673817956541177, 0.4325570297074392,
    0.4383344523410512, 0.4442247200761781, 0.450077238642746, 0.45602306193057474, 0.4619133936845453,
    0.4677699875078029, 0.47363011517124165, 0.4796319732385451, 0.48559505417756804, 0.4919446991869119,
    0.49797993850851346, 0.5039844487850628, 0.510073445644408, 0.5160190402935084, 0.5221118234101901,
    0.5282353538630229, 0.5344403345763431, 0.5405632431318357, 0.5467377325843807, 0.5529083443240976,
    0.5591643206193257, 0.5652500067898891, 0.5714672425390336, 0.5777508383926128, 0.5840477684568132,
    0.590444128931076, 0.5963807426509378, 0.6023875941880622, 0.6084379419568151, 0.6146998262767773,
    0.6207388152735184, 0.6269269133031583, 0.6331127249455178, 0.6394688998769353, 0.6456457854633499,
    0.6519697863529532, 0.6582588512449089, 0.6648164111680094, 0.6711804146894761, 0.6776997645083418,
    0.6842209617281305, 0.691207521069482, 0.6979056663736974, 0.7044567878302164, 0.711327198697708,
    0.7181084221701557, 0.7250171163062756, 0.7317946266857793, 0.738960182714561, 0.7459347613865611,
    0.7531008844393887, 0.7601356774068138, 0.7674709748273136, 0.7747579654573478, 0.7820715330531326,
    0.7893153201091117, 0.7969277642502277, 0.8042207909426825, 0.8113217611035596, 0.8186377248332153,
    0.8257542973008954, 0.8330228870860943, 0.8403051586127804, 0.8477443311802179, 0.8550807443577116,
    0.862437259452176, 0.8696650417971898, 0.8771796102715954, 0.8847451926190066, 0.8919573543661176,
    0.8992151706944501, 0.9064598357231445, 0.9140720786621807, 0.9207563044406314, 0.9277896158290977,
    0.9344892061300744, 0.9413071581278, 0.9476017286403262, 0.9539207543512067, 0.9599938196639805,
    0.96601574306606, 0.9712322362479956, 0.9765787425562595, 0.9815592805708281, 0.9862908035738824,
    0.9903669748178967, 0.9943092735138531, 0.9976525387422673, 1.0,
)


@functools.lru_cache(maxsize=16)
def _false_colour_constants(device, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(table, midpoints between its entries, matrix, offset) on ``device`` (cached: do not modify)."""
    table = torch.tensor(MONITOR_TABLE, dtype=torch.float64)
    mid = (table[1:] + table[:-1]) / 2
    return tuple(torch.as_tensor(t, dtype=dtype).to(device) for t in
                 (table, mid, FALSE_COLOUR_MATRIX, FALSE_COLOUR_OFFSET))


def false_colour(x: torch.Tensor, level: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Level 1: chromatic DKL channels inverted about the grey point in linear monitor output (their
    measured table), back to the nearest 8-bit value (identity for C = 1). Inputs are read as
    8-bit values (rounded), outputs are 8-bit values k / 255."""
    _check(x)
    if not level or x.shape[1] == 1:
        return x
    dt = torch.float32 if x.device.type == "mps" else torch.float64      # no float64 on MPS
    table, mid, a, b = _false_colour_constants(x.device, dt)
    lin = table[(x.clamp(0.0, 1.0) * 255.0).round().long()]
    out = (torch.einsum("ij,njhw->nihw", a, lin) + b.view(1, 3, 1, 1)).clamp_(0.0, 1.0)
    # nearest table entry (the first of two equally near ones, as np.argmin): the number of
    # midpoints below the value
    k = torch.searchsorted(mid, out.contiguous(), right=False)
    return k.to(x.dtype) / 255.0


def symmetric_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Mirror padding of the last two dims that repeats the edge pixel (the toolbox's
    ``np.fliplr``/``flipud`` embedding; scipy.ndimage's 'reflect' mode): ... 1 0 | 0 1 ... n-1 |
    n-1 n-2 ... (pads up to the size). Flipped slices, concatenated: 5x faster than gathering
    rows and columns by index."""
    x = torch.cat([x[..., :pw].flip(-1), x, x[..., x.shape[-1] - pw:].flip(-1)], dim=-1)
    return torch.cat([x[..., :ph, :].flip(-2), x, x[..., x.shape[-2] - ph:, :].flip(-2)], dim=-2)


@functools.lru_cache(maxsize=256)
def _gaussian_transfer(h: int, w: int, sigma_y: float, sigma_x: float, device, dtype) -> torch.Tensor:
    """Full-grid ``[h, w]`` Fourier transfer function of a Gaussian (std in px) on a periodic plane
    (cached: callers must not modify it)."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, device=device, dtype=torch.float64)[None, :]
    t = torch.exp(-2.0 * math.pi ** 2 * (sigma_y ** 2 * fy ** 2 + sigma_x ** 2 * fx ** 2))
    return torch.where(t < 1e-30, 0.0, t).to(dtype)      # no float32 denormals (slow arithmetic)


def _blurred_noise(shape, transfer: torch.Tensor, generator, like: torch.Tensor) -> torch.Tensor:
    """White noise filtered by ``transfer`` (``[..., h, w // 2 + 1]``, rfft layout)."""
    h, w = shape[-2:]
    z = _draw("normal", shape, generator, like)
    return torch.fft.irfft2(torch.fft.rfft2(z) * transfer, s=(h, w))


@functools.lru_cache(maxsize=256)
def _noise_transfer(hh: int, ww: int, sigma_ref: float, f: tuple[float, float], amplitudes: tuple[float, float],
                    device, dtype) -> torch.Tensor:
    """``[2, hh, ww // 2 + 1]`` filter turning unit white noise into Gaussian-blurred noise (std
    ``sigma_ref`` reference px) with expected std ``amplitudes[c]`` (Parseval) in channel c."""
    t = _gaussian_transfer(hh, ww, sigma_ref * f[0], sigma_ref * f[1], device, dtype)
    t = t[:, : ww // 2 + 1] / t.pow(2).mean().sqrt()
    return torch.stack([t * amplitudes[0], t * amplitudes[1]])


def eidolon_displacements(n: int, h: int, w: int, reach: float, generator: torch.Generator | None = None,
                          coherence: float = 1.0, grain: float = 10.0,
                          reference_size: int = EIDOLON_REFERENCE_SIZE, device="cpu", dtype=torch.float32):
    """Yield ``(k, field)`` for the scale levels k = 11 (coarsest) down to 0 (finest): ``field``
    ``[n, 2, hh, ww]`` is the displacement in *our* pixels (channel 0 along columns, 1 along rows)
    on the padded ``hh x ww = (h + 2 (h//2)) x (w + 2 (w//2))`` plane, i.e.
    ``reach * ((1 - coherence) I_k + coherence C_k) * size / 256``. Expected stds (reference px per
    unit reach): C_k ``0.118 sqrt(12 - k)``, I_k ``0.757`` at grain 10 (see the module docstring).
    The yielded tensor may be updated in place by the next step: copy it to keep it."""
    if not 0.0 <= coherence <= 1.0:
        raise ValueError(f"coherence must be in [0, 1], got {coherence}")
    fy, fx = h / reference_size, w / reference_size          # our px per reference px, per axis
    hh, ww = h + 2 * (h // 2), w + 2 * (w // 2)
    like = torch.empty(0, device=device, dtype=dtype)
    px = (float(reach) * fx, float(reach) * fy)               # reference px -> our px, (columns, rows)
    coherent_amp = _eid_blurred_std(1.0) / _EID_MAX_SIGMA       # sigma * (1/sigma) / MAX_SIGMA
    incoherent = None
    if coherence < 1:
        amp = (1.0 - coherence) * _eid_blurred_std(grain)
        incoherent = _noise_transfer(hh, ww, grain, (fy, fx), (amp * px[0], amp * px[1]), device, dtype)
    coherent = torch.zeros(n, 2, hh, ww, device=device, dtype=dtype)
    for k in reversed(range(_EID_NUM_LEVELS)):                   # coarse to fine: C_k = sum_{j>=k} P_j
        amp = coherence * coherent_amp
        transfer = _noise_transfer(hh, ww, _EID_SIGMAS[k], (fy, fx), (amp * px[0], amp * px[1]), device, dtype)
        coherent += _blurred_noise((n, 2, hh, ww), transfer, generator, like)
        yield k, coherent if incoherent is None else coherent + _blurred_noise((n, 2, hh, ww), incoherent,
                                                                                generator, like)


def eidolon(x: torch.Tensor, level: float, generator: torch.Generator | None = None, coherence: float = 1.0,
            grain: float = 10.0, reference_size: int = EIDOLON_REFERENCE_SIZE) -> torch.Tensor:
    """Partially coherent disarray (Koenderink et al. 2017 eidolon factory) with reach ``level``
    (in pixels of a ``reference_size`` = 256 px image; see the module docstring for the algorithm
    and how it differs from the toolbox). Works on the grey image; reach 0 returns it."""
    if not 0.0 <= coherence <= 1.0:
        raise ValueError(f"coherence must be in [0, 1], got {coherence}")
    g = to_grey(x)
    reach = float(level)
    if reach == 0.0:
        return _out(g, x)
    n, _, h, w = g.shape
    fy, fx = h / reference_size, w / reference_size
    ph, pw = h // 2, w // 2
    fat = symmetric_pad(g, ph, pw)
    hh, ww = fat.shape[-2:]
    dev, dt = g.device, g.dtype
    half = ww // 2 + 1
    transfers = [_gaussian_transfer(hh, ww, s * fy, s * fx, dev, dt)[:, :half] for s in _EID_SIGMAS]
    spectrum = torch.fft.rfft2(fat)

    def slice_k(k: int) -> torch.Tensor:
        """DOG slice k; the finest is ``image - G_1`` so that the slices sum to the image."""
        if k == _EID_NUM_LEVELS - 1:
            t = transfers[k]
        else:
            t = (1.0 if k == 0 else transfers[k]) - transfers[k + 1]
        return torch.fft.irfft2(spectrum * t, s=(hh, ww))

    # grid_sample coordinates (x = column, y = row; align_corners=True: -1..1 = first..last pixel)
    ys = torch.linspace(-1.0, 1.0, hh, device=dev, dtype=dt)
    xs = torch.linspace(-1.0, 1.0, ww, device=dev, dtype=dt)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)          # [hh, ww, 2] (x, y)
    to_unit = torch.tensor([2.0 / max(ww - 1, 1), 2.0 / max(hh - 1, 1)], device=dev, dtype=dt).view(1, 2, 1, 1)
    out = torch.zeros(n, 1, hh, ww, device=dev, dtype=dt)
    for k, disp in eidolon_displacements(n, h, w, reach, generator, coherence, grain, reference_size, dev, dt):
        grid = base + (disp * to_unit).permute(0, 2, 3, 1)
        out += F.grid_sample(slice_k(k), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return _out(out[:, :, ph:ph + h, pw:pw + w].clamp_(0.0, 1.0), x)


# ----------------------------------------------------------------------------------------------
# registry and evaluation
# ----------------------------------------------------------------------------------------------

class Manipulation(NamedTuple):
    """``(fn, default_levels, identity_level)``: ``fn(x, level, generator) -> x``. At the identity
    level the manipulation's own parameter does nothing and ``fn`` returns the experiment's control
    image: the input for greyscale, false colour and (on grey inputs) every grey-based one; the grey
    image for colour inputs of contrast, filters, phase noise, power equalisation, rotation and
    eidolon; the 30 %-contrast grey image for uniform noise."""
    fn: Callable[..., torch.Tensor]
    levels: tuple
    identity: float


MANIPULATIONS: dict[str, Manipulation] = {
    "greyscale": Manipulation(greyscale, (0.0, 1.0), 0.0),
    "contrast": Manipulation(contrast, (1.0, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03, 0.01), 1.0),
    "uniform_noise": Manipulation(uniform_noise, (0.0, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9), 0.0),
    "low_pass": Manipulation(low_pass, (0.0, 1.0, 3.0, 5.0, 7.0, 10.0, 15.0, 40.0), 0.0),
    "high_pass": Manipulation(high_pass, (math.inf, 3.0, 1.5, 1.0, 0.7, 0.55, 0.45, 0.4), math.inf),
    "phase_noise": Manipulation(phase_noise, (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0), 0.0),
    "power_equalisation": Manipulation(power_equalisation, (0.0, 1.0), 0.0),
    "rotation": Manipulation(rotation, (0.0, 90.0, 180.0, 270.0), 0.0),
    "false_colour": Manipulation(false_colour, (0.0, 1.0), 0.0),
    "eidolon": Manipulation(eidolon, (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0), 0.0),
}

#: Names of the two-level manipulations' levels (the tidy ``level`` column stays numeric).
LEVEL_LABELS = {
    "greyscale": {0.0: "colour", 1.0: "greyscale"},
    "power_equalisation": {0.0: "original", 1.0: "equalised"},
    "false_colour": {0.0: "true colour", 1.0: "opponent colour"},
}


def response_entropy(predictions, n_classes: int | None = None) -> float:
    """Entropy in bits, ``-sum_k p_k log2 p_k``, of the distribution of predicted classes over the
    test images (Geirhos et al. Fig. 3, bottom row): log2 K when every class is predicted equally
    often, 0 when one class is always predicted."""
    p = torch.as_tensor(predictions).reshape(-1).long()
    if p.numel() == 0:
        return float("nan")
    if n_classes is not None and (int(p.min()) < 0 or int(p.max()) >= n_classes):
        raise ValueError(f"predictions outside 0..{n_classes - 1}")
    counts = torch.bincount(p, minlength=n_classes or 0).double()
    q = counts[counts > 0] / counts.sum()
    return float(-(q * torch.log2(q)).sum()) + 0.0


def _as_float01(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def manipulation_seed(seed: int, name: str, level: float, block: int) -> int:
    """Seed of the generator for one block of images at one level: the same for every model."""
    words = [int(seed), zlib.crc32(name.encode()), zlib.crc32(repr(float(level)).encode()), int(block)]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _predicted_classes(model, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """(the class ``model`` predicts for each image of ``x``, on the CPU; its number of outputs)."""
    preds, n_classes = [], None
    for j in range(0, len(x), batch_size):
        logits = model(x[j:j + batch_size])
        n_classes = logits.shape[1]
        preds.append(logits.argmax(1).cpu())
    return torch.cat(preds), n_classes


@torch.no_grad()
def manipulation_accuracies(models, images: torch.Tensor, labels: torch.Tensor,
                            manipulations: dict[str, Sequence[float] | None] | Sequence[str] | None = None,
                            seed: int = 0, device="cpu", batch_size: int = 500, block_size: int = 250,
                            progress: bool = True, phase_noise_method: str = "authors") -> list[list[dict]]:
    """For each model, ``[{"manipulation", "level", "accuracy", "entropy_bits", "n"}, ...]`` for
    uint8 (or [0, 1] float) images ``[N, C, H, W]``.

    ``manipulations`` maps names of :data:`MANIPULATIONS` to levels (None: the defaults); a list of
    names or None (all) takes the defaults. Images are manipulated in blocks of ``block_size`` with a
    CPU generator seeded by ``(seed, name, level, block index)``, so every model -- whatever its
    ``batch_size`` or device -- sees the same manipulated images; each block is made once and
    scored by every model (the seeds of one arm in one job). ``power_equalisation`` uses the mean
    amplitude spectrum of all ``images``. ``entropy_bits`` is :func:`response_entropy` of the
    predictions over the model's number of outputs. ``phase_noise_method`` is :func:`phase_noise`'s
    ``method`` (config ``brain_likeness.manipulations.phase_noise_method``). Stochastic models (a
    VOneBlock's noise, drawn from torch's global generator) draw in the order of the models, block
    by block."""
    if manipulations is None:
        manipulations = {name: None for name in MANIPULATIONS}
    elif not isinstance(manipulations, dict):
        manipulations = {name: None for name in manipulations}
    if phase_noise_method not in PHASE_NOISE_METHODS:
        raise ValueError(f"phase_noise_method must be one of {PHASE_NOISE_METHODS}, got {phase_noise_method!r}")
    unknown = sorted(set(manipulations) - set(MANIPULATIONS))
    if unknown:
        raise ValueError(f"unknown manipulations {unknown}; known: {sorted(MANIPULATIONS)}")
    for model in models:
        model.eval()
    labels = torch.as_tensor(labels).cpu()
    out = [[] for _ in models]
    jobs = [(name, float(level)) for name, levels in manipulations.items()
            for level in (MANIPULATIONS[name].levels if levels is None else levels)]
    extra = {}
    for name, level in tqdm(jobs, desc="manipulations", disable=not progress):
        fn = MANIPULATIONS[name].fn
        kwargs = {}
        if name == "power_equalisation":
            if "mean_amplitude" not in extra:
                extra["mean_amplitude"] = mean_amplitude_spectrum(images, block_size=block_size, device=device)
            kwargs["mean_amplitude"] = extra["mean_amplitude"]
        elif name == "phase_noise":
            kwargs["method"] = phase_noise_method
        blocks = []  # per block, each model's (predictions, n_classes)
        for b, start in enumerate(range(0, len(images), block_size)):
            g = torch.Generator().manual_seed(manipulation_seed(seed, name, level, b))
            x = fn(_as_float01(images[start:start + block_size]).to(device), level, g, **kwargs)
            blocks.append([_predicted_classes(model, x, batch_size) for model in models])
        for m in range(len(models)):
            preds, n_classes = torch.cat([block[m][0] for block in blocks]), blocks[-1][m][1]
            out[m].append({"manipulation": name, "level": level,
                           "accuracy": float((preds == labels[:len(preds)]).double().mean()),
                           "entropy_bits": response_entropy(preds, n_classes), "n": len(preds)})
    return out


def manipulation_accuracy(model, images: torch.Tensor, labels: torch.Tensor,
                          manipulations: dict[str, Sequence[float] | None] | Sequence[str] | None = None,
                          seed: int = 0, device="cpu", batch_size: int = 500, block_size: int = 250,
                          progress: bool = True, phase_noise_method: str = "authors") -> list[dict]:
    """``[{"manipulation", "level", "accuracy", "entropy_bits", "n"}, ...]`` for one model (see
    :func:`manipulation_accuracies`)."""
    return manipulation_accuracies([model], images, labels, manipulations, seed, device, batch_size, block_size,
                                   progress, phase_noise_method)[0]
