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
(``benchmarks/corruption_speed.py`` times both side by side: benchmarks/RESULTS.md, and per
corruption and severity benchmarks/results/corruption_speed.csv).

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


@numba.njit(**_JIT)
def _tie_key(v):
    """corruptions.blur._resolve_ties's table index for one float32 value on the 0..255 scale (the same
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


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
def _quantise(v):
    """np.uint8(np.clip(v, 0, 1) * 255) of a float32 value (corruptions._common._finalise)."""
    return np.uint8(np.int32(min(max(v, np.float32(0)), np.float32(1)) * np.float32(255)))


@numba.njit(**_JIT)
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
    flat1_f = np.empty(len(flat1), np.float32)
    for j in range(len(flat1)):
        flat1_f[j] = np.float32(flat1[j])
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
    top, bottom, left, right = 0, 0, 0, 0
    for t in range(len(dy)):  # (loops, not .max(): numba compiles array reductions slowly)
        top, bottom = max(top, dy[t]), max(bottom, -dy[t])
        left, right = max(left, dx[t]), max(right, -dx[t])
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
    """Snow (``corruptions.weather._snow_from_crop`` after the zoom and threshold): motion blur of the
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
                    out[i, b, y, c] = _quantise(bright + snow)
    return out


# ----------------------------------------------------------------------------------------------
# elastic transform


@numba.njit(**_JIT)
def _lerp(a, b, t):
    """torch.lerp on the CPU (its vectorised form): a + t (b - a) for |t| < 0.5, else
    b + (t - 1) (b - a), each one FMA (written with selects: no branch)."""
    small = abs(t) < np.float32(0.5)
    return _fma(t if small else t - np.float32(1), b - a, a if small else b)


@numba.njit(**_JIT)
def _uniform_fields(words, m, out):
    """Displacement fields uniform in +-m from 16-bit words (int16 u): (u + 32768.5) (2 m /
    65536) - m in float32, three roundings as the torch form's add_, mul_, sub_."""
    flat, target = words.reshape(words.size), out.reshape(out.size)
    shift, scale, low = np.float32(32768.5), np.float32(2 * m / 65536), np.float32(m)
    for p in range(target.size):
        target[p] = (np.float32(flat[p]) + shift) * scale - low


@numba.njit(**_JIT_FMA)
def _banded_rows(src, index, weight, out):
    """out[i, :] = sum over k of weight[i, k] src[index[i, k], :], as a chain of FMAs from 0 in
    k order: row i of a dense float32 matmul M @ src whose row i has these (ascending) non-zeros
    (sgemm accumulates along the inner dimension with FMAs; the zeros leave the sum unchanged:
    identical with torch.matmul on this machine, checked by the tests). Rows are contiguous, so
    each step is one vectorised pass over a row."""
    rows, n = out.shape
    for i in range(rows):
        acc = out[i]
        for x in range(n):
            acc[x] = np.float32(0)
        for k in range(index.shape[1]):
            wk = weight[i, k]
            row = src[index[i, k]]
            for x in range(n):
                acc[x] = acc[x] + wk * row[x]


@numba.njit(**_JIT)
def elastic_fields(words, m, alpha, col_index, col_weight, row_index, row_weight, out):
    """The two displacement fields [2, N, H, W] float32 of ``corruptions.elastic_transform``:
    uniform from 16-bit words (int16 [2, N, H, W]), smoothed as ``corruptions.digital._elastic_smooth``
    (M_h @ (field @ M_w^T), banded weights of the reflect-mode Gaussian: ``row_*`` for M_h,
    ``col_*`` for M_w), times alpha. field @ M_w^T is computed transposed (M_w @ field^T), so
    both passes run along contiguous rows."""
    _uniform_fields(words, m, out)
    two, n, h, w = out.shape
    field_t = np.empty((w, h), np.float32)
    across_t = np.empty((w, h), np.float32)
    across = np.empty((h, w), np.float32)
    a32 = np.float32(alpha)
    for f in range(two):
        for i in range(n):
            field = out[f, i]
            for y in range(h):
                for x in range(w):
                    field_t[x, y] = field[y, x]
            _banded_rows(field_t, col_index, col_weight, across_t)  # (field @ M_w^T)^T
            for y in range(h):
                for x in range(w):
                    across[y, x] = across_t[x, y]
            _banded_rows(across, row_index, row_weight, field)  # M_h @ (field @ M_w^T)
            for y in range(h):
                for x in range(w):
                    field[y, x] = field[y, x] * a32
    return out


@numba.njit(**_JIT)
def _mirror(s, n):
    """Index into [0, n) of position s in scipy's 'reflect' extension (edge repeated), |s| < 2n."""
    return -s - 1 if s < 0 else (2 * n - 1 - s if s >= n else s)


@numba.njit(**_JIT)
def elastic_apply(x, dx, dy, out):
    """Bilinear resampling of images x float32 [N, C, H, W] at (y + dy, x + dx) (displacements
    float32 [N, H, W], smoothed and scaled) with scipy's 'reflect' (half-sample symmetric)
    boundary, quantised into out uint8: ``corruptions.digital._elastic_apply``'s torch form pixel by
    pixel (its padding width and clamps, its lerps: identical output). Where to read and the
    fractions are worked out once per pixel for all channels."""
    n, ch, h, w = x.shape
    hw = h * w
    largest = np.float32(0)
    for i in range(n):
        fx, fy = dx[i].reshape(hw), dy[i].reshape(hw)
        for p in range(hw):
            largest = max(largest, abs(np.floor(fx[p])), abs(np.floor(fy[p])))
    pad = min(np.int64(largest) + 2, h - 1, w - 1)
    hp, wp = h + 2 * pad, w + 2 * pad
    row_of = np.empty(hp, np.int64)  # padded row -> offset of the image row
    col_of = np.empty(wp, np.int64)
    for j in range(hp):
        row_of[j] = w * _mirror(j - pad, h)
    for j in range(wp):
        col_of[j] = _mirror(j - pad, w)
    top_left = np.empty(hw, np.int64)
    top_right = np.empty(hw, np.int64)
    bottom_left = np.empty(hw, np.int64)
    bottom_right = np.empty(hw, np.int64)
    tx = np.empty(hw, np.float32)
    ty = np.empty(hw, np.float32)
    for i in range(n):
        ddx, ddy = dx[i].reshape(hw), dy[i].reshape(hw)
        for y in range(h):
            for c in range(w):
                p = y * w + c
                fx, fy = np.floor(ddx[p]), np.floor(ddy[p])
                tx[p], ty[p] = ddx[p] - fx, ddy[p] - fy
                r0 = min(max(np.int64(fy) + y + pad, 0), hp - 2)
                c0 = min(max(np.int64(fx) + c + pad, 0), wp - 2)
                ra, rb, ca, cb = row_of[r0], row_of[r0 + 1], col_of[c0], col_of[c0 + 1]
                top_left[p], top_right[p], bottom_left[p], bottom_right[p] = ra + ca, ra + cb, rb + ca, rb + cb
        for b in range(ch):
            plane = x[i, b].reshape(hw)
            target = out[i, b].reshape(hw)
            for p in range(hw):
                top = _lerp(plane[top_left[p]], plane[top_right[p]], tx[p])
                bottom = _lerp(plane[bottom_left[p]], plane[bottom_right[p]], tx[p])
                target[p] = _quantise(_lerp(top, bottom, ty[p]))
    return out


# ----------------------------------------------------------------------------------------------
# brightness

@numba.njit(**_JIT)
def brightness_apply(x8, levels, v8_of, v_new_of, delta_of, s_of, p8_of, out):
    """rgb2hsv -> V + c -> hsv2rgb of uint8 RGB images x8 [N, 3, H, W] pixel by pixel, the same
    float64 operations as ``corruptions.weather._brightness`` (which documents them) from the same
    tables: bit-exact with it and with the reference. Selections are written as selects (no
    branches: hues change from pixel to pixel)."""
    n, _, h, w = x8.shape
    hw = h * w
    for i in range(n):
        red, green, blue = x8[i, 0].reshape(hw), x8[i, 1].reshape(hw), x8[i, 2].reshape(hw)
        out_r, out_g, out_b = out[i, 0].reshape(hw), out[i, 1].reshape(hw), out[i, 2].reshape(hw)
        for p in range(hw):
            r, g, b = red[p], green[p], blue[p]
            big = max(max(r, g), b)
            small = min(min(r, g), b)
            is_b = b == big
            is_g = (g == big) and not is_b
            first = r if is_b else (b if is_g else g)
            second = g if is_b else (r if is_g else b)
            offset = 4.0 if is_b else (2.0 if is_g else 0.0)
            key = np.int64(big) * 256 + np.int64(small)
            hue = (levels[first] - levels[second]) / delta_of[key] + offset
            hue = hue / 6.0
            hue = (hue + (1.0 if hue < 0 else 0.0)) * 6.0
            whole = np.floor(hue)
            f = hue - whole
            sector = np.int64(whole)
            sector = sector - 6 if sector >= 6 else sector  # (h / 6) % 1 * 6 < 6 except by rounding
            odd = np.float64(sector & 1)
            f = f * (odd * 2.0 - 1.0) + (1.0 - odd)
            mid = np.uint8(np.int32((-(f * s_of[key]) + 1.0) * v_new_of[big] * 255.0))
            v, lo = v8_of[big], p8_of[key]
            # hsv2rgb's (r, g, b) per sector, mid = t in even sectors and q in odd ones:
            # 0 (v, t, p) 1 (q, v, p) 2 (p, v, t) 3 (p, q, v) 4 (t, p, v) 5 (v, p, q)
            out_r[p] = v if (sector == 0 or sector == 5) else (mid if (sector == 1 or sector == 4) else lo)
            out_g[p] = v if (sector == 1 or sector == 2) else (mid if (sector == 0 or sector == 3) else lo)
            out_b[p] = v if (sector == 3 or sector == 4) else (mid if (sector == 2 or sector == 5) else lo)
    return out


# ----------------------------------------------------------------------------------------------
# fog


@numba.njit(**_JIT)
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
        for r in range(m):
            for c in range(m):
                a[r, c] = 0.0
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
        low = a[0, 0]  # (explicit loops: numba compiles array reductions slowly)
        for r in range(m):
            for c in range(m):
                low = min(low, a[r, c])
        high = 0.0
        for r in range(m):
            for c in range(m):
                a[r, c] = a[r, c] - low
                high = max(high, a[r, c])
        largest = x[i, 0, 0, 0]
        for b in range(ch):
            for y in range(h):
                for c in range(w):
                    largest = max(largest, x[i, b, y, c])
        scale_den = largest + c0f
        for b in range(ch):
            for y in range(h):
                for c in range(w):
                    v = x[i, b, y, c] + c0f * np.float32(a[y, c] / high)
                    out[i, b, y, c] = _quantise(v * largest / scale_den)
    return out


# ----------------------------------------------------------------------------------------------
# noise: the random draws come from torch (same generator, same order as the torch form); the
# kernels do the per-value arithmetic in one pass


@numba.njit(**_JIT)
def shot_noise_apply(x8, uniforms, c, prob, outcome, out):
    """Poisson(x8 c) / c as ``corruptions.noise._shot_noise`` draws it (float32 uniforms: column
    floor(u (c+1)), accepted if the fraction is below the alias table's probability), one pass."""
    xf, uf, of = x8.reshape(x8.size), uniforms.reshape(uniforms.size), out.reshape(out.size)
    m = np.float32(c + 1)
    for p in range(of.size):
        t = uf[p] * m
        column = np.floor(t)
        t = t - column
        idx = np.int64(xf[p]) * (c + 1) + min(np.int64(column), c)
        of[p] = outcome[2 * idx + (1 if t < prob[idx] else 0)]
    return out


@numba.njit(**_JIT)
def impulse_noise_apply(x8, words, pepper, salt, out):
    """Salt and pepper from 16-bit uniforms (int16 words u, compared as u ^ -32768 as the torch
    form): below ``salt`` the value is replaced, by 255 if at least ``pepper`` else by 0."""
    xf, wf, of = x8.reshape(x8.size), words.reshape(words.size), out.reshape(out.size)
    for p in range(of.size):
        u = np.int32(wf[p]) ^ -32768
        of[p] = (np.uint8(255) if u >= pepper else np.uint8(0)) if u < salt else xf[p]
    return out


# ----------------------------------------------------------------------------------------------
# frost, contrast, pixelate: table look-ups and integer arithmetic (identical by construction)


@numba.njit(**_JIT)
def frost_apply(x8, textures, starts, heights, widths, idx, row0, col0, lut, out):
    """out = lut[256 x8 + crop] with crop the [C, H, W] window at (row0, col0) of texture idx
    (textures uint8, flat and concatenated; texture t starts at starts[t], is [C, heights[t],
    widths[t]])."""
    n, ch, h, w = x8.shape
    for i in range(n):
        t = idx[i]
        for c in range(ch):
            for y in range(h):
                base = starts[t] + (c * heights[t] + row0[i] + y) * widths[t] + col0[i]
                for x in range(w):
                    out[i, c, y, x] = lut[np.int64(x8[i, c, y, x]) * 256 + textures[base + x]]
    return out


@numba.njit(**_JIT)
def contrast_apply(x8, c, out):
    """(k - mean) c + mean per image and channel in float64 (k = x8 / 255., mean of the plane:
    its exact integer sum / 255. / (H W)), clipped to [0, 1], times 255, truncated: the torch
    form's look-up table, built per plane."""
    n, ch, h, w = x8.shape
    hw = h * w
    lut = np.empty(256, np.uint8)
    for i in range(n):
        for b in range(ch):
            plane = x8[i, b].reshape(hw)
            total = 0
            for p in range(hw):
                total += np.int64(plane[p])
            mean = np.float64(total) / 255.0 / hw
            for k in range(256):
                v = (k / 255.0 - mean) * c + mean
                lut[k] = np.uint8(min(max(v, 0.0), 1.0) * 255.0)
            target = out[i, b].reshape(hw)
            for p in range(hw):
                target[p] = lut[plane[p]]
    return out


@numba.njit(**_JIT)
def _pil_box_8bpc(total, weight):
    """Pillow's 8-bit fixed-point step: clip((sum * weight + 2**21) >> 22, 0, 255)."""
    return min(max((total * weight + (1 << 21)) >> 22, 0), 255)


@numba.njit(**_JIT)
def pixelate_apply(x8, col_first, col_count, col_weight, row_first, row_count, row_weight, col_src, row_src, out):
    """Pillow ``resize(BOX)`` down then ``resize(NEAREST)`` up, in Pillow's integer arithmetic:
    horizontal pass (output column j sums col_count[j] input columns from col_first[j], times
    col_weight[j]), vertical pass likewise, then out[y, x] = small[row_src[y], col_src[x]]."""
    n, ch, h, w = x8.shape
    mw, mh = len(col_first), len(row_first)
    across = np.empty((h, mw), np.int64)
    small = np.empty((mh, mw), np.uint8)
    for i in range(n):
        for b in range(ch):
            image = x8[i, b]
            for y in range(h):
                for j in range(mw):
                    total = 0
                    for x in range(col_first[j], col_first[j] + col_count[j]):
                        total += np.int64(image[y, x])
                    across[y, j] = _pil_box_8bpc(total, col_weight[j])
            for k in range(mh):
                for j in range(mw):
                    total = 0
                    for y in range(row_first[k], row_first[k] + row_count[k]):
                        total += across[y, j]
                    small[k, j] = _pil_box_8bpc(total, row_weight[k])
            for y in range(h):
                for x in range(w):
                    out[i, b, y, x] = small[row_src[y], col_src[x]]
    return out
