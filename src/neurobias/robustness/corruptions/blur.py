"""ImageNet-C blur corruptions: defocus_blur, glass_blur, motion_blur, zoom_blur.

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

Agreement with imagecorruptions 1.1.2: the same arithmetic in float32; given the same random
draws, outputs differ by one grey level in 0.001-1% of the values. These linear filters map a
flat neighbourhood of value k to k S (S the weight sum): the reference's float64/float32
arithmetic puts that a few ulp below or above k and truncation then gives k - 1 or k;
``_resolve_ties`` replays the reference's arithmetic for flat neighbourhoods (``_tie_table``) and
uses its answer for our values within ``TIE_EPS`` of an integer.

Motion blur's machinery (``motion_taps``, ``_motion_blur_apply``, ``_kernel_taps``) and
``clipped_zoom_matrix`` also serve :mod:`.weather`'s snow.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..filters import exact_fp32_convolutions
from ._common import _cpu_kernels, _kernels, _on_device, _random_int16, _scipy_gaussian_kernel, _uint8_native

# imagecorruptions 1.1.2's parameter tables, severity 1..5.
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius, alias blur
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, delta, iterations
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma
ZOOM_BLUR = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))


# ----------------------------------------------------------------------------------------------
# flat neighbourhoods (ties) and convolutions


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


def _planes_conv(planes: torch.Tensor, kernel: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Valid 2-D correlation of every plane [P, Hp, Wp] with one kernel [kh, kw].

    On the CPU the planes are grouped 16 to a sample, the case oneDNN's depthwise kernel
    vectorises (a 1-channel convolution takes a slow path, ~10x slower)."""
    p, hp, wp = planes.shape
    kh, kw = kernel.shape
    if planes.device.type != "cpu":
        with exact_fp32_convolutions():
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
# defocus blur


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


# ----------------------------------------------------------------------------------------------
# glass blur


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


# ----------------------------------------------------------------------------------------------
# motion blur


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


# ----------------------------------------------------------------------------------------------
# zoom blur


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


defocus_blur = _uint8_native(_defocus_blur, "defocus_blur")
glass_blur = _uint8_native(_glass_blur, "glass_blur")
motion_blur = _uint8_native(_motion_blur, "motion_blur")
zoom_blur = _uint8_native(_zoom_blur, "zoom_blur")
