"""ImageNet-C weather corruptions: snow, frost, fog, brightness.

snow            Gaussian snow layer (drawn only in the centre crop that clipped_zoom keeps: the
                rest never reaches the image), clipped-zoomed (as :mod:`.blur`'s zoom blur),
                thresholded, motion-blurred (:mod:`.blur`'s motion blur) with an angle in
                [-135, -45] deg per image, rounded to 1/255, added with its 180-degree rotation
                to the image blended with its brightened greyscale (cv2's RGB2GRAY).
frost           one of the first five textures (the reference's ``randint(5)`` never picks the
                sixth), resized by the reference's factor (1.1 for images smaller than the
                texture; torch bicubic in float64, rounded: OpenCV's fixed-point INTER_CUBIC
                differs by one level in ~1e-5 of the texture pixels), random crop per image;
                ``np.clip(c0 x + c1 frost, 0, 255)`` as a float64 table over (x, frost).
fog             the reference's diamond-square plasma fractal (with its ``wibble**2`` scaling),
                vectorised over the images, on a power-of-two map cropped to the image.
brightness      rgb2hsv -> V + c (clipped) -> hsv2rgb.

Agreement with imagecorruptions 1.1.2: brightness is bit-exact (skimage's rgb2hsv/hsv2rgb
replayed operation by operation in float64; what depends only on a pixel's maximum and minimum
is tabulated; checked on all 2**24 colours). Snow, fog and frost have the same arithmetic in
float32: given the same random draws they differ by one grey level in 0.001-1% of the values.

The frost textures ship in ``frost/`` next to the package (``neurobias/robustness/frost``;
Apache-2.0, from the ImageNet-C repository via imagecorruptions; see ``frost/README.md``); their
SHA-256 are pinned below.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._common import _DEVICE_CACHE, _cpu_kernels, _finalise, _kernels, _on_device, _randn, _uint8_native
from .blur import _kernel_taps, _motion_blur_apply, clipped_zoom_matrix

# imagecorruptions 1.1.2's parameter tables, severity 1..5.
SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FOG = ((1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4))
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)

FROST_DIR = Path(__file__).resolve().parent.parent / "frost"  # neurobias/robustness/frost
FROST_FILES = {  # name: sha256 (the files of imagecorruptions 1.1.2 / ImageNet-C)
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}
N_FROST_USED = 5  # imagecorruptions draws np.random.randint(5): frost6 is never used


# ----------------------------------------------------------------------------------------------
# snow


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


# ----------------------------------------------------------------------------------------------
# frost


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


# ----------------------------------------------------------------------------------------------
# fog


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


# ----------------------------------------------------------------------------------------------
# brightness


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


frost = _uint8_native(_frost, "frost")
brightness = _uint8_native(_brightness, "brightness")
