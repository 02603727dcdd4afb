"""The embedded synthetic task: ten shape classes on cluttered colour backgrounds, no download.

Each image shows one large, soft-edged shape (disk, square, diamond, plus, ring, horizontal bar,
vertical bar, two blobs, triangle, hollow square) with random position, size, small rotation and
random colours over a smooth random background. Shape identity is carried by low spatial
frequencies, which survive pixel noise.

On top sits an optional *shortcut*: a small 6x6-pixel high-frequency code in the top-left corner
(a 3x3 pattern of +-``shortcut_amplitude`` cells) that identifies the class on
``shortcut_probability`` of the images (a random class's code otherwise). A CNN picks such a cue up
readily; it vanishes under pixel noise because it covers few pixels. (A first version used a
faint full-image grating: a global matched filter detects that through heavy noise, so it made
the baseline *more* robust, not less.) This makes the task a useful
testbed for an inductive bias towards low-frequency, V1-like features: a network that relies on
the shape degrades gracefully with noise, one that relies on the corner code does not.

Everything is a pure function of the seed, vectorised in numpy.
"""

from __future__ import annotations

import numpy as np

N_CLASSES = 10
CLASS_NAMES = ("disk", "square", "diamond", "plus", "ring", "hbar", "vbar", "two_blobs",
               "triangle", "hollow_square")


def _signed_distance(shape_ids: np.ndarray, u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) of each image's shape.

    u, v: [N, H, W] coordinates in the shape's frame; radius: [N, 1, 1].
    """
    R = radius
    w = 0.35 * R  # stroke half-width for plus, ring, bars
    au, av = np.abs(u), np.abs(v)
    r = np.sqrt(u ** 2 + v ** 2)
    candidates = {
        0: r - R,
        1: np.maximum(au, av) - 0.85 * R,
        2: (au + av) / np.sqrt(2) - 0.8 * R,
        3: np.minimum(np.maximum(au - w, av - 1.1 * R), np.maximum(av - w, au - 1.1 * R)),
        4: np.abs(r - 0.8 * R) - w,
        5: np.maximum(au - 1.3 * R, av - w),
        6: np.maximum(av - 1.3 * R, au - w),
        7: np.minimum(np.sqrt((u - 0.75 * R) ** 2 + v ** 2), np.sqrt((u + 0.75 * R) ** 2 + v ** 2)) - 0.5 * R,
        8: np.maximum(-v - 0.6 * R, (0.5 * v + 0.866 * au) - 0.55 * R),
        9: np.abs(np.maximum(au, av) - 0.8 * R) - 0.7 * w,
    }
    out = np.empty_like(u)
    for k, dist in candidates.items():
        sel = shape_ids == k
        out[sel] = dist[sel]
    return out


def _shortcut_codes() -> np.ndarray:
    """Ten distinct 3x3 patterns of +-1, each cell 2x2 pixels: [10, 6, 6]."""
    rng = np.random.default_rng(2024)
    codes = set()
    while len(codes) < N_CLASSES:
        codes.add(tuple(rng.choice([-1.0, 1.0], 9)))
    cells = np.array(sorted(codes), dtype=np.float32).reshape(N_CLASSES, 3, 3)
    return np.kron(cells, np.ones((2, 2), dtype=np.float32))


SHORTCUT_CODES = _shortcut_codes()


def _smooth_field(rng: np.random.Generator, n: int, size: int, channels: int, cutoff: float) -> np.ndarray:
    """Random fields with only spatial frequencies below ``cutoff`` (cycles/pixel), unit SD."""
    white = rng.standard_normal((n, channels, size, size)).astype(np.float32)
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    lowpass = np.exp(-0.5 * (radius / cutoff) ** 2)
    field = np.fft.ifft2(np.fft.fft2(white) * lowpass).real
    field -= field.mean(axis=(-2, -1), keepdims=True)
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-8
    return field.astype(np.float32)


def render_images(rng: np.random.Generator, labels: np.ndarray, size: int = 32,
                  shortcut_amplitude: float = 0.2, shortcut_probability: float = 0.9,
                  clutter: float = 0.12) -> np.ndarray:
    """Render one RGB image per label: float32 [N, 3, size, size] in [0, 1]."""
    n = len(labels)
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    centre = size / 2 - 0.5 + rng.uniform(-size * 0.14, size * 0.14, (n, 2)).astype(np.float32)
    radius = (size * rng.uniform(0.2, 0.3, n)).astype(np.float32)[:, None, None]
    angle = rng.uniform(-0.26, 0.26, n).astype(np.float32)[:, None, None]  # ±15°: bars stay bars
    dy, dx = yy[None] - centre[:, 0, None, None], xx[None] - centre[:, 1, None, None]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    dist = _signed_distance(labels, u, v, radius)
    mask = 1.0 / (1.0 + np.exp(dist / 0.8))  # soft edge, ~1 px

    background = rng.uniform(0.2, 0.8, (n, 3, 1, 1)).astype(np.float32)
    # Foreground colour differs from the background in luminance by at least 0.25 so that the
    # grey version (what the simulated V1 sees) still shows the shape.
    sign = rng.choice([-1.0, 1.0], n).astype(np.float32)[:, None, None, None]
    foreground = np.clip(background + sign * rng.uniform(0.25, 0.45, (n, 1, 1, 1)) +
                         rng.uniform(-0.15, 0.15, (n, 3, 1, 1)), 0.0, 1.0).astype(np.float32)
    image = background + clutter * _smooth_field(rng, n, size, 3, cutoff=0.06)
    image = image * (1 - mask[:, None]) + foreground * mask[:, None]

    if shortcut_amplitude > 0:
        cue = np.where(rng.random(n) < shortcut_probability, labels, rng.integers(0, N_CLASSES, n))
        image[:, :, 1:7, 1:7] += shortcut_amplitude * SHORTCUT_CODES[cue][:, None]
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def to_grey(images_rgb01: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, [N, 3, H, W] -> [N, H, W]."""
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
    return (images_rgb01 * w).sum(axis=1)


def make_synthetic_task(seed: int, n_train: int, n_val: int, n_test: int, image_size: int = 32,
                        shortcut_amplitude: float = 0.2, shortcut_probability: float = 0.9,
                        clutter: float = 0.12) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/val/test splits as ``{split: (images uint8 [N,3,H,W], labels int64 [N])}``.

    Classes are balanced within each split; each split draws from its own child seed so that
    changing ``n_test`` does not change the training images.
    """
    splits = {}
    children = np.random.SeedSequence(seed).spawn(3)
    for (name, n), child in zip((("train", n_train), ("val", n_val), ("test", n_test)), children):
        rng = np.random.default_rng(child)
        labels = rng.permutation(np.arange(n) % N_CLASSES).astype(np.int64)
        images = render_images(rng, labels, image_size, shortcut_amplitude, shortcut_probability, clutter)
        splits[name] = (to_uint8(images), labels)
    return splits


def make_stimulus_images(seed: int, n: int, image_size: int = 32, shortcut_amplitude: float = 0.2,
                         clutter: float = 0.12) -> np.ndarray:
    """Grey stimulus images for the (simulated) recording: uint8 [N, H, W].

    Drawn from the task's image distribution but with their own seed, with class labels uniform and
    the corner code independent of the shape (probability 0), as a recording session would show
    images unrelated to any classifier's training set.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    labels = rng.integers(0, N_CLASSES, n)
    rgb = render_images(rng, labels, image_size, shortcut_amplitude, 0.0, clutter)
    return to_uint8(to_grey(rgb))


def build(params: dict):
    """The ``synthetic`` dataset source's builder (declared in :mod:`neurobias.data`)."""
    keys = ("seed", "n_train", "n_val", "n_test", "image_size", "shortcut_amplitude",
            "shortcut_probability", "clutter")
    splits = make_synthetic_task(**{k: params[k] for k in keys if k in params})
    if params.get("grey"):  # one luma channel, as grey Tiny ImageNet (Safarani 2021)
        from .cifar import luma
        splits = {name: (luma(images), labels) for name, (images, labels) in splits.items()}
    return splits, list(CLASS_NAMES)
