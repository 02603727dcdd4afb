"""ImageNet-C digital corruptions: contrast, elastic_transform, pixelate, jpeg_compression.

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

Agreement with imagecorruptions 1.1.2: contrast (float64 lookup table per image and channel),
pixelate (Pillow's fixed-point BOX and NEAREST resampling) and jpeg_compression (the same
libjpeg) are bit-exact; elastic_transform has the same arithmetic in float32 (given the same
random draws, one grey level in 0.001-1% of the values).
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import torch

from ..manipulations import symmetric_pad
from ._common import U16, _cpu_kernels, _kernels, _random_int16, _scipy_gaussian_kernel, _uint8_native

# imagecorruptions 1.1.2's parameter tables, severity 1..5.
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_QUALITY = (25, 18, 15, 10, 7)


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


# ----------------------------------------------------------------------------------------------
# contrast


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


# ----------------------------------------------------------------------------------------------
# elastic transform


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


# ----------------------------------------------------------------------------------------------
# pixelate


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


# ----------------------------------------------------------------------------------------------
# JPEG


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


contrast = _uint8_native(_contrast, "contrast")
pixelate = _uint8_native(_pixelate, "pixelate")
jpeg_compression = _uint8_native(_jpeg_compression, "jpeg_compression")
