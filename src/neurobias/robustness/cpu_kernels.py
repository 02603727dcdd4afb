"""Compiled CPU kernels (numba) for the corruptions whose batched-torch form is many small
operations.

On the CPU, torch runs each operation of a corruption as a separate pass over the whole block of
images (a blur tap, a shifted slice, a table look-up): for 64 x 64 images most of the time goes
into those passes and their temporaries, not into arithmetic. Where a corruption is a short
per-pixel recipe, one compiled loop over the pixels does the same arithmetic in one pass while the
image is in cache. These kernels are used by :mod:`neurobias.robustness.corruptions` for images on
the CPU (``corruptions.CPU_KERNELS``, default on); the torch implementation stays the one for GPUs
and is tested against the reference on the CPU as well. Each kernel states how its arithmetic
relates to the torch form: the same float32 operations in the same order (identical output) or
the same operations summed in another order (float32 rounding: a result that falls on an
integer boundary may truncate the other way; measured in ``tests/test_corruptions.py``).

No maintained library offers these recipes (imagecorruptions' own code is per image numpy/scipy,
~100x slower); they are written here because they were measured faster than the torch form
(``benchmarks/corruption_speed.py``; per-kernel ratios in benchmarks/RESULTS.md).

Every kernel is compiled once per process on first use (``cache=True``: numba keeps the machine
code in ``__pycache__`` for later processes) and releases the GIL (``nogil``): ``corrupt``'s
worker threads run them in parallel. They work on numpy views of the torch tensors (no copies).
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)

TIE_EPS = np.float32(1e-4)  # as corruptions.TIE_EPS, in float32 like the torch form's arithmetic
INV_TIE_EPS = np.float32(1 / 1e-4)


@numba.njit(inline="always", **_JIT)
def _tie_key(v):
    """corruptions._resolve_ties's table index for one float32 value on the 0..255 scale (the same
    float32 operations: clamp, + eps, floor, (t - r) / eps, floor, min 2, + 3 r)."""
    v = min(max(v, np.float32(0)), np.float32(255))
    t = v + TIE_EPS
    r = np.float32(np.floor(t))
    b = min(np.float32(np.floor((t - r) * INV_TIE_EPS)), np.float32(2))
    return np.int64(b + r * np.float32(3))


# ----------------------------------------------------------------------------------------------
# glass blur


@numba.njit(**_JIT)
def glass_source_map(h, w, delta, dx, dy, words, out):
    """imagecorruptions' sequential local copies, replayed literally: for every image i and pass,
    positions (r, c) for r = h-delta..delta+1 and c = w-delta..delta+1 (descending, row-major)
    take the current source of (r + dy, c + dx) (the reference's ``x[h, w], x[h2, w2] = x[h2, w2],
    x[h, w]`` on numpy views copies; see corruptions' docstring). dx, dy int [iterations, N,
    n_positions]: the offsets, or (words=True) 16-bit uniforms u (any integer type, low 16 bits
    used) that become offsets ((u 2 delta) >> 16) - delta in [-delta, delta) here (no separate
    pass over them). out int64 [N, h*w] (flat source pixel per flat pixel)."""
    iterations, n = dx.shape[0], dx.shape[1]
    span = 2 * delta
    for i in range(n):
        src = out[i]
        for p in range(h * w):
            src[p] = p
        for it in range(iterations):
            j = 0
            for r in range(h - delta, delta, -1):
                row = r * w
                for c in range(w - delta, delta, -1):
                    ox, oy = np.int64(dx[it, i, j]), np.int64(dy[it, i, j])
                    if words:
                        ox = (((ox & 0xFFFF) * span) >> 16) - delta
                        oy = (((oy & 0xFFFF) * span) >> 16) - delta
                    src[row + c] = src[(r + oy) * w + c + ox]
                    j += 1
    return out


@numba.njit(inline="always", **_JIT)
def _replicate_edges(padded, h, w, r):
    """Edge replication ('nearest') of a padded plane [(h+2r), (w+2r)] (flat) whose interior
    [r:r+h, r:r+w] is filled."""
    w2 = w + 2 * r
    for y in range(r, r + h):
        base = y * w2
        left, right = padded[base + r], padded[base + r + w - 1]
        for c in range(r):
            padded[base + c] = left
            padded[base + r + w + c] = right
    for y in range(r):
        top, bottom = y * w2, (r + h + y) * w2
        first, last = r * w2, (r + h - 1) * w2
        for c in range(w2):
            padded[top + c] = padded[first + c]
            padded[bottom + c] = padded[last + c]


@numba.njit(inline="always", **_JIT)
def _separable_valid(padded, h, w, r, k, rows, out):
    """Valid separable correlation of a padded plane [(h+2r), (w+2r)] (flat) with centred weights
    k: along rows, then along columns, taps summed in order (float32). Works on the flat buffers
    with the padded row stride (long vectorisable loops); out[y (w+2r) + c] for c < w is the
    result, the other entries are scratch. rows: scratch of the padded size."""
    w2 = w + 2 * r
    n_rows = (h + 2 * r) * w2 - 2 * r
    k0 = k[0]
    for j in range(n_rows):
        rows[j] = k0 * padded[j]
    for t in range(1, 2 * r + 1):
        kt = k[t]
        src = padded[t:]
        for j in range(n_rows):
            rows[j] += kt * src[j]
    n_out = h * w2 - 2 * r
    for j in range(n_out):
        out[j] = k0 * rows[j]
    for t in range(1, 2 * r + 1):
        kt = k[t]
        src = rows[t * w2:]
        for j in range(n_out):
            out[j] += kt * src[j]


@numba.njit(inline="always", **_JIT)
def _tie_keys(values, n, keys):
    """_tie_key of values[:n] into keys (int32; a separate loop from the table look-up so that
    it vectorises)."""
    for j in range(n):
        keys[j] = _tie_key(values[j])


@numba.njit(**_JIT)
def glass_apply(x8, k, source, flat1, flat2, out):
    """Glass blur of uint8 images x8 [N, C, H, W] given the source maps int64 [N, H*W]: Gaussian
    blur (weights k, 'nearest') -> the reference's flat-aware truncation (table flat1) -> the
    copies -> Gaussian blur -> truncation (table flat2) into out uint8 [N, C, H, W]. The blurs sum
    their taps in another order than oneDNN's convolution in the torch form (float32 rounding)."""
    n, ch, h, w = x8.shape
    hw = h * w
    r = len(k) // 2
    w2 = w + 2 * r
    size = (h + 2 * r) * w2
    level = np.empty(hw, np.float32)
    padded = np.empty(size, np.float32)
    rows = np.empty(size, np.float32)
    blurred = np.empty(size, np.float32)
    keys = np.empty(size, np.int32)
    flat1_f = flat1.astype(np.float32)
    for i in range(n):
        src = source[i]
        for c in range(ch):
            image = x8[i, c].reshape(hw)
            for y in range(h):
                row = (y + r) * w2 + r
                for x in range(w):
                    padded[row + x] = np.float32(image[y * w + x])
            _replicate_edges(padded, h, w, r)
            _separable_valid(padded, h, w, r, k, rows, blurred)
            _tie_keys(blurred, h * w2 - 2 * r, keys)
            for y in range(h):
                for x in range(w):
                    level[y * w + x] = flat1_f[keys[y * w2 + x]]
            for y in range(h):
                row = (y + r) * w2 + r
                for x in range(w):
                    padded[row + x] = level[src[y * w + x]]
            _replicate_edges(padded, h, w, r)
            _separable_valid(padded, h, w, r, k, rows, blurred)
            _tie_keys(blurred, h * w2 - 2 * r, keys)
            target = out[i, c].reshape(hw)
            for y in range(h):
                for x in range(w):
                    target[y * w + x] = flat2[keys[y * w2 + x]]
    return out


# ----------------------------------------------------------------------------------------------
# motion blur (and the snow layer's streaks)

# torch's ``add_(other, alpha=a)`` is a fused multiply-add on the CPU (checked: identical to a
# float64 a * b + c rounded once, never to the two-rounding form): 'contract' lets LLVM emit the
# same FMA for ``acc + k * x``, so these sums are identical to the torch form's. Only functions
# whose every ``a * b + c`` is such an FMA in the torch form are compiled with it (the flag is
# kept per instruction when LLVM inlines them into the kernels, which are compiled without it).
_JIT_FMA = dict(_JIT, fastmath={"contract"})


@numba.njit(**_JIT_FMA)
def _fma(a, b, c):
    """a * b + c rounded once (torch's ``c.add_(a, alpha=b)``)."""
    return a * b + c


@numba.njit(**_JIT_FMA)
def _motion_sums(image, k, dy, dx, valid, padded, acc):
    """Motion-blur sums of one image [C, H, W] (uint8 or float32): acc [C, H*W] (float32) =
    k[0] x + sum over valid taps t of k[t] x[clamp(y - dy[t]), clamp(x - dx[t])], taps in
    order (dy, dx of invalid taps must be 0: they only size the padding); padded: scratch for the
    edge-replicated image (the padding this image's taps need, at most 3 H x 3 W)."""
    ch, h, w = image.shape
    top = max(0, dy.max())
    bottom = max(0, -dy.min())
    left = max(0, dx.max())
    right = max(0, -dx.min())
    hp, wp = h + top + bottom, w + left + right
    k0 = k[0]
    for c in range(ch):
        pc = padded[c]
        for y in range(hp):
            row = image[c, min(max(y - top, 0), h - 1)]
            base = y * wp
            first, last = np.float32(row[0]), np.float32(row[w - 1])
            for x in range(left):
                pc[base + x] = first
            for x in range(w):
                pc[base + left + x] = np.float32(row[x])
            for x in range(right):
                pc[base + left + w + x] = last
        a = acc[c]
        for y in range(h):
            base = (y + top) * wp + left
            for x in range(w):
                a[y * w + x] = k0 * pc[base + x]
        for t in range(1, len(k)):
            if not valid[t]:
                break
            kt = k[t]
            for y in range(h):
                src = pc[(y + top - dy[t]) * wp + left - dx[t]:]
                dst = a[y * w:]
                for x in range(w):
                    dst[x] = dst[x] + kt * src[x]


@numba.njit(**_JIT)
def motion_blur_apply(x8, k, dy, dx, valid, ties, out):
    """Motion blur of uint8 images x8 [N, C, H, W] (k float32 [width]; dy, dx int64 and valid
    bool [N, width] from ``corruptions.motion_taps``), truncated with the reference's flat-aware
    rule (tie table ``ties``) into out uint8 [N, C, H, W]."""
    n, ch, h, w = x8.shape
    padded = np.empty((ch, 9 * h * w), np.float32)  # valid shifts are below the image size
    acc = np.empty((ch, h * w), np.float32)
    for i in range(n):
        _motion_sums(x8[i], k, dy[i], dx[i], valid[i], padded, acc)
        for c in range(ch):
            target = out[i, c].reshape(h * w)
            a = acc[c]
            for p in range(h * w):
                target[p] = ties[_tie_key(a[p])]
    return out


@numba.njit(**_JIT)
def snow_compose(x, layer, k, dy, dx, valid, blend, out):
    """Snow (``corruptions._snow_from_crop`` after the zoom and threshold): motion blur of the
    snow layer [N, 1, Ho, Wo] (taps as in ``motion_blur_apply``), rounded to 1/255, plus its
    180-degree rotation (of the [:H, :W] crop), added to the images x float32 [N, 3, H, W] (k/255)
    blended with their brightened greyscale (cv2 RGB2GRAY): blend x + (1 - blend) max(x, 1.5 grey
    + 0.5); out uint8 = truncated 255 clip(., 0, 1). Float32 operations in the torch form's order
    (its ``add_(.., alpha)`` are FMAs, as here)."""
    n, ch, h, w = x.shape
    lh, lw = layer.shape[2], layer.shape[3]
    padded = np.empty((1, 9 * lh * lw), np.float32)
    acc = np.empty((1, lh * lw), np.float32)
    streaks = np.empty(h * w, np.float32)
    keep = np.float32(1 - blend)
    blend32 = np.float32(blend)
    for i in range(n):
        _motion_sums(layer[i], k, dy[i], dx[i], valid[i], padded, acc)
        a = acc[0]
        for y in range(h):
            for c in range(w):
                streaks[y * w + c] = np.round(a[y * lw + c] * np.float32(255)) / np.float32(255)
        image = x[i]
        for y in range(h):
            for c in range(w):
                p = y * w + c
                snow = streaks[p] + streaks[(h - 1 - y) * w + (w - 1 - c)]
                grey = image[0, y, c] * np.float32(0.299) + image[1, y, c] * np.float32(0.587)
                grey = grey + image[2, y, c] * np.float32(0.114)
                grey = grey * np.float32(1.5) + np.float32(0.5)
                for b in range(ch):
                    v = image[b, y, c]
                    bright = _fma(v, blend32, max(v, grey) * keep)
                    bright = bright + snow
                    bright = min(max(bright, np.float32(0)), np.float32(1)) * np.float32(255)
                    out[i, b, y, c] = np.uint8(np.int32(bright))
    return out


# ----------------------------------------------------------------------------------------------
# elastic transform


@numba.njit(inline="always", **_JIT)
def _lerp(a, b, t):
    """torch.lerp on the CPU (its vectorised form): a + t (b - a) for |t| < 0.5, else
    b + (t - 1) (b - a), each one FMA."""
    if abs(t) < np.float32(0.5):
        return _fma(t, b - a, a)
    return _fma(t - np.float32(1), b - a, b)


@numba.njit(inline="always", **_JIT)
def _quantise(v):
    """np.uint8(np.clip(v, 0, 1) * 255) of a float32 value (corruptions._finalise)."""
    return np.uint8(np.int32(min(max(v, np.float32(0)), np.float32(1)) * np.float32(255)))


@numba.njit(**_JIT)
def elastic_apply(x, dx, dy, out):
    """Bilinear resampling of images x float32 [N, C, H, W] at (y + dy, x + dx) (displacements
    float32 [N, H, W], smoothed and scaled) with scipy's 'reflect' (half-sample symmetric)
    boundary, quantised into out uint8: ``corruptions._elastic_apply``'s torch form pixel by
    pixel (its padding width and clamps, its lerps: identical output)."""
    n, ch, h, w = x.shape
    largest = np.float32(0)
    for i in range(n):
        for y in range(h):
            for c in range(w):
                largest = max(largest, abs(np.floor(dx[i, y, c])), abs(np.floor(dy[i, y, c])))
    pad = min(np.int64(largest) + 2, h - 1, w - 1)
    hp, wp = h + 2 * pad, w + 2 * pad
    row_of = np.empty(hp, np.int64)  # padded row -> image row (mirror with the edge repeated)
    col_of = np.empty(wp, np.int64)
    for j in range(hp):
        s = j - pad
        row_of[j] = -s - 1 if s < 0 else (2 * h - 1 - s if s >= h else s)
    for j in range(wp):
        s = j - pad
        col_of[j] = -s - 1 if s < 0 else (2 * w - 1 - s if s >= w else s)
    for i in range(n):
        for y in range(h):
            for c in range(w):
                fx, fy = np.floor(dx[i, y, c]), np.floor(dy[i, y, c])
                tx, ty = dx[i, y, c] - fx, dy[i, y, c] - fy
                r0 = min(max(np.int64(fy) + y + pad, 0), hp - 2)
                c0 = min(max(np.int64(fx) + c + pad, 0), wp - 2)
                ra, rb, ca, cb = row_of[r0], row_of[r0 + 1], col_of[c0], col_of[c0 + 1]
                for b in range(ch):
                    image = x[i, b]
                    top = _lerp(image[ra, ca], image[ra, cb], tx)
                    bottom = _lerp(image[rb, ca], image[rb, cb], tx)
                    out[i, b, y, c] = _quantise(_lerp(top, bottom, ty))
    return out


# ----------------------------------------------------------------------------------------------
# brightness

_SECTOR_PICK = np.array(((0, 2, 1), (2, 0, 1), (1, 0, 2), (1, 2, 0), (2, 1, 0), (0, 1, 2)), np.int64)


@numba.njit(**_JIT)
def brightness_apply(x8, levels, v8_of, v_new_of, delta_of, s_of, p8_of, out):
    """rgb2hsv -> V + c -> hsv2rgb of uint8 RGB images x8 [N, 3, H, W] pixel by pixel, the same
    float64 operations as ``corruptions._brightness`` (which documents them) from the same
    tables: bit-exact with it and with the reference."""
    n, _, h, w = x8.shape
    pick = _SECTOR_PICK
    for i in range(n):
        for y in range(h):
            for c in range(w):
                r, g, b = x8[i, 0, y, c], x8[i, 1, y, c], x8[i, 2, y, c]
                big = max(max(r, g), b)
                small = min(min(r, g), b)
                if b == big:
                    first, second, offset = r, g, 4.0
                elif g == big:
                    first, second, offset = b, r, 2.0
                else:
                    first, second, offset = g, b, 0.0
                key = np.int64(big) * 256 + np.int64(small)
                hue = (levels[first] - levels[second]) / delta_of[key] + offset
                hue = hue / 6.0
                hue = (hue + (1.0 if hue < 0 else 0.0)) * 6.0
                whole = np.floor(hue)
                f = hue - whole
                sector = np.int64(whole) % 6
                odd = np.float64(sector & 1)
                f = f * (odd * 2.0 - 1.0) + (1.0 - odd)
                mid = (-(f * s_of[key]) + 1.0) * v_new_of[big]
                candidates = (v8_of[big], p8_of[key], np.uint8(np.int32(mid * 255.0)))
                for channel in range(3):
                    out[i, channel, y, c] = candidates[pick[sector, channel]]
    return out


# ----------------------------------------------------------------------------------------------
# fog


@numba.njit(inline="always", **_JIT)
def _wibbled(mean, u, wibble):
    """The reference's wibbledmean: mean / 4 + wibble * uniform(-wibble, wibble), the uniform
    from a float32 draw u in [0, 1) as corruptions.fog makes it (u (2 wibble) - wibble)."""
    return mean * 0.25 + wibble * (np.float64(u) * (wibble - -wibble) + -wibble)


@numba.njit(**_JIT)
def fog_apply(x, draws, mapsize, wibbledecay, c0, out):
    """Fog of images x float32 [N, C, H, W] (k / 255): the reference's diamond-square plasma
    fractal per image (float64, from float32 uniforms ``draws`` [N, total] in the order
    ``corruptions.fog`` hands them to ``plasma_fractal``: per level, the square step's, then the
    two diamond steps', row-major), normalised to [0, 1], then (x + c0 plasma) max / (max + c0)
    in float32 and quantised into out uint8. The same operations as the torch form (its rolls are
    the wrapped neighbours here)."""
    n, ch, h, w = x.shape
    m = mapsize
    a = np.empty((m, m), np.float64)
    c0f = np.float32(c0)
    for i in range(n):
        a[:, :] = 0.0
        u = draws[i]
        pos = 0
        stepsize = m
        wibble = 100.0
        while stepsize >= 2:
            s, half = stepsize, stepsize // 2
            k = m // s
            for r in range(k):  # square step: mean of the four corners
                for c in range(k):
                    r1, c1 = (r + 1) % k, (c + 1) % k
                    square = (a[r * s, c * s] + a[r1 * s, c * s]) + (a[r * s, c1 * s] + a[r1 * s, c1 * s])
                    a[r * s + half, c * s + half] = _wibbled(square, u[pos + r * k + c], wibble)
            pos += k * k
            for r in range(k):  # diamond step, points between corners along rows
                for c in range(k):
                    r0, c1 = (r - 1) % k, (c + 1) % k
                    dr = a[r * s + half, c * s + half] + a[r0 * s + half, c * s + half]
                    lt = dr + (a[r * s, c * s] + a[r * s, c1 * s])
                    a[r * s, c * s + half] = _wibbled(lt, u[pos + r * k + c], wibble)
            pos += k * k
            for r in range(k):  # diamond step, points between corners along columns
                for c in range(k):
                    r1, c0_ = (r + 1) % k, (c - 1) % k
                    dr = a[r * s + half, c * s + half] + a[r * s + half, c0_ * s + half]
                    tt = dr + (a[r * s, c * s] + a[r1 * s, c * s])
                    a[r * s + half, c * s] = _wibbled(tt, u[pos + r * k + c], wibble)
            pos += k * k
            stepsize //= 2
            wibble /= wibbledecay
        low = a.min()
        for r in range(m):
            for c in range(m):
                a[r, c] = a[r, c] - low
        high = a.max()
        largest = np.float32(x[i].max())
        scale_den = largest + c0f
        for b in range(ch):
            for y in range(h):
                for c in range(w):
                    v = x[i, b, y, c] + c0f * np.float32(a[y, c] / high)
                    out[i, b, y, c] = _quantise(v * largest / scale_den)
    return out
