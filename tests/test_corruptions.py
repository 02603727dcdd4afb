"""ImageNet-C corruptions (``neurobias.robustness.corruptions``) against the reference,
imagecorruptions 1.1.2 (through ``neurobias.robustness.reference_corruptions``), on a few 64x64
test images: four images of the synthetic task (smooth, with flat regions), two 1/f textures and
one uniform-noise image (every hue).

Three kinds of comparison:

* deterministic corruptions: ``corrupt`` against ``imagecorruptions.corrupt``, image by image;
* random corruptions with few random parameters or fields that can be replayed: the reference
  runs after ``np.random.seed(s)``; the same draws are then taken from ``np.random`` in the
  reference's order and fed to our corruption's deterministic part (``_*_apply``);
* random corruptions through ``corrupt`` itself: statistics of (corrupted - clean) over several
  seeds, and the ordering of damage across severities.

Tolerances, ours against the reference (grey levels; "frac": fraction of values that differ):

| corruption        | kind          | max | frac   | why they can differ |
|-------------------|---------------|-----|--------|---------------------|
| brightness        | deterministic | 0   | 0      | float64, operation by operation as skimage (bit-exact) |
| contrast          | deterministic | 0   | 0      | float64 lookup table per image and channel (bit-exact) |
| pixelate          | deterministic | 0   | 0      | Pillow's fixed-point BOX / NEAREST re-implemented (bit-exact) |
| jpeg_compression  | deterministic | 0   | 0      | the same libjpeg through torchvision (bit-exact) |
| frost             | replayed      | 1   | 0.001  | the resized texture: torch bicubic (float64, rounded) differs from cv2's fixed-point INTER_CUBIC by one level in ~1e-5 of its pixels; the rest is a float64 table (exact) |
| defocus_blur      | deterministic | 1   | 0.005  | float32 convolution against cv2's float64 filter2D: values within ~1e-4 of an integer truncate either way |
| zoom_blur         | deterministic | 1   | 0.001  | float32 sparse operator against scipy zoom + float32 sums (same) |
| motion_blur       | replayed      | 1   | 0.02   | float32 against float64 sums; near-flat regions whose far taps differ by ~1e-6 (severity 1 on synthetic images) |
| glass_blur        | replayed      | 1   | 0.005  | float32 Gaussian blurs (two truncations) |
| snow              | replayed      | 1   | 0.001  | float32 layer (rounded to 1/255) |
| fog               | replayed      | 1   | 0.001  | float32 composition of the float64 fractal |
| elastic_transform | replayed      | 1   | 0.001  | float32 smoothing of the displacement fields |
| gaussian_noise    | replayed      | 1   | 0.001  | float32 against float64 |

On the CPU, ``corrupt`` runs the compiled kernels of ``neurobias.robustness.cpu_kernels`` where a
corruption has one; the tests above check that path. The torch form (what a GPU runs) must give
identical output on the CPU (``test_cpu_kernels_give_the_torch_forms_output``, every corruption
and severity, 64 images); glass blur's kernel sums its blur taps in another order (one level in
at most 1e-3 of the values, 2.7e-4 measured), so its torch form is also checked against the
reference directly.

Statistics through ``corrupt`` (3 seeds x 7 images; fog and impulse noise 12, frost 15 seeds): |mean difference| within
``mean`` grey levels, std and mean absolute difference within ``rel`` (relative):
gaussian/shot/impulse noise, elastic, motion, glass 3% (1.5 levels); snow 6%; fog 15% and frost
25% (their random texture / fractal amplitude varies a lot from draw to draw; their arithmetic is
checked exactly by the replay tests). Impulse noise flips only 3% of the values at severity 1, so
one draw's mean |difference| varies by ~2.6% (measured over 20 seeds): 12 seeds put 3% at about
three standard errors of the difference.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurobias.data.synthetic import make_synthetic_task
from neurobias.robustness import corruptions as C
from neurobias.robustness.corruptions import CATEGORIES, CORRUPTIONS, TIN_TC, category_of, corrupt, luma
from neurobias.robustness.reference_corruptions import corruption_module as ic
from neurobias.robustness.reference_corruptions import reference_corrupt

NAMES = list(CORRUPTIONS)
SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 64

EXACT = {  # name: (max abs difference, max fraction of differing values)
    "brightness": (0, 0.0), "contrast": (0, 0.0), "pixelate": (0, 0.0), "jpeg_compression": (0, 0.0),
    "frost": (1, 0.001), "defocus_blur": (1, 0.005), "zoom_blur": (1, 0.001), "motion_blur": (1, 0.02),
    "glass_blur": (1, 0.005), "snow": (1, 0.001), "fog": (1, 0.001), "elastic_transform": (1, 0.001),
    "gaussian_noise": (1, 0.001),
}
DETERMINISTIC = ("brightness", "contrast", "pixelate", "jpeg_compression", "defocus_blur", "zoom_blur")
REPLAYED = ("motion_blur", "frost", "glass_blur", "snow", "fog", "elastic_transform", "gaussian_noise")
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
          "elastic_transform")
STAT_TOLERANCE = {  # name: (|mean| in grey levels, relative for std and mean |difference|)
    "gaussian_noise": (1.5, 0.03), "shot_noise": (1.5, 0.03), "impulse_noise": (1.5, 0.03),
    "elastic_transform": (1.5, 0.03), "motion_blur": (1.5, 0.03), "glass_blur": (1.5, 0.03),
    "snow": (4.0, 0.06), "fog": (8.0, 0.15), "frost": (15.0, 0.25),
}
STAT_SEEDS = {"fog": 12, "frost": 15, "impulse_noise": 12}
# The reference's damage (mean |corrupted - clean|) is not monotone in severity for these; ours must
# show the same up/down pattern. All others must increase strictly, in both.
NOT_MONOTONE_IN_REFERENCE = ("glass_blur", "snow", "frost")


# ----------------------------------------------------------------------------------------------
# test images and cached runs


@functools.lru_cache(maxsize=None)
def sample_images() -> np.ndarray:
    """uint8 [7, 3, 64, 64]: 4 synthetic-task images, 2 colour 1/f textures, 1 uniform noise."""
    syn = make_synthetic_task(0, 0, 0, 4, image_size=SIZE)["test"][0]
    rng = np.random.default_rng(0)
    f = np.fft.fftfreq(SIZE)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1
    textures = []
    for _ in range(2):
        spectrum = (rng.normal(size=(3, SIZE, SIZE)) + 1j * rng.normal(size=(3, SIZE, SIZE))) / radius ** 1.2
        im = np.real(np.fft.ifft2(spectrum))
        im = (im - im.mean()) / im.std() * 0.22 + 0.5
        textures.append(np.clip(np.rint(im * 255), 0, 255).astype(np.uint8))
    noise = rng.integers(0, 256, (1, 3, SIZE, SIZE), dtype=np.uint8)
    return np.concatenate([syn, np.stack(textures), noise])




def hwc(image_chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_chw.transpose(1, 2, 0))


@functools.lru_cache(maxsize=None)
def ours(name: str, severity: int, seed: int = 0) -> np.ndarray:
    return corrupt(torch.from_numpy(sample_images()), name, severity, seed).numpy()


def reference_seed(seed: int, image_index: int) -> int:
    return 1000 * seed + image_index


@functools.lru_cache(maxsize=None)
def reference(name: str, severity: int, seed: int = 0) -> np.ndarray:
    out = []
    for i, im in enumerate(sample_images()):
        np.random.seed(reference_seed(seed, i))
        out.append(reference_corrupt(hwc(im), name, severity).transpose(2, 0, 1))
    return np.stack(out)


def assert_close(a: np.ndarray, b: np.ndarray, max_diff: int, max_frac: float, what: str) -> None:
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    assert a.shape == b.shape, what
    assert d.max() <= max_diff, f"{what}: max |difference| {d.max()} > {max_diff}"
    assert (d > 0).mean() <= max_frac, f"{what}: {(d > 0).mean():.5f} of values differ (> {max_frac})"


# ----------------------------------------------------------------------------------------------
# API


def test_registry_has_the_fifteen_imagenet_c_corruptions_in_the_reference_order():
    assert NAMES == ic_names() == [n for names in CATEGORIES.values() for n in names]
    assert list(CATEGORIES) == ["noise", "blur", "weather", "digital"]
    assert CATEGORIES["blur"] == ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur")
    assert all(callable(f) for f in CORRUPTIONS.values())


def ic_names() -> list[str]:
    import imagecorruptions

    return imagecorruptions.get_corruption_names("common")


def test_tin_tc_is_the_fourteen_without_glass_blur():
    assert len(TIN_TC) == 14 and "glass_blur" not in TIN_TC
    assert list(TIN_TC) == [n for n in NAMES if n != "glass_blur"]


def test_category_of():
    assert category_of("shot_noise") == "noise"
    assert category_of("zoom_blur") == "blur"
    assert category_of("fog") == "weather"
    assert category_of("pixelate") == "digital"
    with pytest.raises(ValueError, match="gaussian_noise"):
        category_of("speckle_noise")


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, "3", True, None])
def test_bad_severity_raises_naming_the_valid_values(severity):
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 4, 5\]"):
        corrupt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "fog", severity, 0)


@pytest.mark.parametrize("name", ["speckle_noise", "Fog", "", "gaussian_blur"])
def test_unknown_name_raises_naming_the_valid_names(name):
    with pytest.raises(ValueError, match="jpeg_compression"):
        corrupt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), name, 1, 0)


@pytest.mark.parametrize("images", [
    torch.zeros(1, 3, 32, 32),  # float
    torch.zeros(3, 32, 32, dtype=torch.uint8),  # no batch dimension
    torch.zeros(1, 2, 32, 32, dtype=torch.uint8),  # 2 channels
    torch.zeros(1, 3, 16, 64, dtype=torch.uint8),  # smaller than the reference allows
])
def test_bad_images_raise(images):
    with pytest.raises(ValueError):
        corrupt(images, "contrast", 1, 0)


# ----------------------------------------------------------------------------------------------
# agreement with the reference


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_match_the_reference(name, severity):
    assert_close(ours(name, severity), reference(name, severity), *EXACT[name], f"{name} severity {severity}")


@pytest.mark.parametrize("severity", (1, 5))
def test_brightness_matches_the_reference_on_every_colour(severity):
    """Brightness tabulates what depends on a pixel's maximum and minimum: every one of the 2**24
    RGB colours (256 images of 256 x 256, red constant per image) must come out as the
    reference's, bit for bit."""
    levels = np.arange(256, dtype=np.uint8)
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)  # [256, 256, 256, 3]
    theirs = np.stack([reference_corrupt(image, "brightness", severity) for image in colours])
    mine = corrupt(torch.from_numpy(colours.transpose(0, 3, 1, 2).copy()), "brightness", severity, 0)
    assert_close(mine.numpy().transpose(0, 2, 3, 1), theirs, 0, 0.0, f"brightness severity {severity}, all colours")


def replay(name: str, severity: int, image: np.ndarray, seed: int) -> np.ndarray:
    """Our corruption of one image with the reference's random draws after np.random.seed(seed)."""
    np.random.seed(seed)
    h, w = image.shape[1:]
    x8 = torch.from_numpy(image[None].copy())
    x = x8.float() / 255
    if name == "motion_blur":
        y = C.blur._motion_blur_image(x8, severity, np.array([np.random.uniform(-45, 45)]))
    elif name == "frost":
        idx = np.random.randint(5)
        texture = C.weather._frost_textures(h, w, torch.device("cpu"))[idx]
        row0 = np.random.randint(0, texture.shape[1] - h)
        col0 = np.random.randint(0, texture.shape[2] - w)
        y = C.weather._frost_apply(x8, severity, np.array([idx]), np.array([row0]), np.array([col0]))
    elif name == "glass_blur":
        _, delta, iterations = C.GLASS_BLUR[severity - 1]
        offsets = np.random.randint(-delta, delta, size=(iterations, (h - 2 * delta) * (w - 2 * delta), 2))
        y = C.blur._glass_apply(x8, severity, C.glass_source_map(h, w, delta, offsets[None]))
    elif name == "snow":
        c = C.SNOW[severity - 1]
        field = np.random.normal(size=(h, w), loc=c[0], scale=c[1])
        angle = np.random.uniform(-135, -45)
        y = C.weather._snow_apply(x, severity, torch.from_numpy(field[None]), np.array([angle]))
    elif name == "fog":
        def uniform(shape, low, high):
            return torch.from_numpy(np.random.uniform(low, high, shape[1:])[None])

        plasma = C.plasma_fractal(1, C.weather._next_power_of_2(max(h, w, 3)), C.FOG[severity - 1][1], uniform)
        y = C.weather._fog_apply(x, severity, plasma)
    elif name == "elastic_transform":
        m = h * 0.005
        ux = np.random.uniform(-m, m, size=(h, w))
        uy = np.random.uniform(-m, m, size=(h, w))
        y = C.digital._elastic_apply(x, severity, torch.from_numpy(ux[None]), torch.from_numpy(uy[None]))
    elif name == "gaussian_noise":
        noise = np.random.normal(size=(h, w, 3), scale=1.0)  # the reference's draw, scale applied after
        y = C.noise._gaussian_noise_apply(x, severity, torch.from_numpy(noise.transpose(2, 0, 1)[None].copy()).float())
    else:
        raise ValueError(name)
    return C._common._finalise(y)[0].numpy()


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", REPLAYED)
def test_random_corruptions_match_the_reference_given_the_same_draws(name, severity):
    check_replay(name, severity)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_glass_blur_torch_form_matches_the_reference_given_the_same_draws(severity, monkeypatch):
    """The CPU runs glass blur's compiled kernel, whose sums differ from the torch form's in
    rounding: the torch form (the GPU's) is checked against the reference on the CPU too. (For
    the other corruptions the two forms give identical output: test_cpu_kernels_...)"""
    monkeypatch.setattr(C, "CPU_KERNELS", False)
    check_replay("glass_blur", severity)


def check_replay(name: str, severity: int) -> None:
    got = np.stack([replay(name, severity, im, reference_seed(0, i)) for i, im in enumerate(sample_images())])
    assert_close(got, reference(name, severity), *EXACT[name], f"{name} severity {severity}")


def damage_statistics(outputs: list[np.ndarray]) -> tuple[float, float, float]:
    d = np.stack(outputs).astype(np.float64) - sample_images()[None]
    return d.mean(), d.std(), np.abs(d).mean()


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_have_the_reference_statistics(name, severity):
    seeds = range(STAT_SEEDS.get(name, 3))
    mean_o, std_o, mad_o = damage_statistics([ours(name, severity, s) for s in seeds])
    mean_r, std_r, mad_r = damage_statistics([reference(name, severity, s) for s in seeds])
    tol_mean, rel = STAT_TOLERANCE[name]
    what = f"{name} severity {severity}: ours mean/std/mad {mean_o:.2f}/{std_o:.2f}/{mad_o:.2f}, " \
           f"reference {mean_r:.2f}/{std_r:.2f}/{mad_r:.2f}"
    assert abs(mean_o - mean_r) <= tol_mean, what
    assert abs(std_o - std_r) <= rel * std_r, what
    assert abs(mad_o - mad_r) <= rel * mad_r, what


def direction_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: log(horizontal / vertical) and log(diagonal / antidiagonal) mean absolute
    differences of the grey image: the direction of a blur or of streaks."""
    y = images.astype(np.float64).mean(axis=1)
    gh = np.abs(np.diff(y, axis=2)).mean(axis=(1, 2))
    gv = np.abs(np.diff(y, axis=1)).mean(axis=(1, 2))
    d1 = np.abs(y[:, 1:, 1:] - y[:, :-1, :-1]).mean(axis=(1, 2))
    d2 = np.abs(y[:, 1:, :-1] - y[:, :-1, 1:]).mean(axis=(1, 2))
    return np.log(gh / gv), np.log(d1 / d2)


@pytest.mark.parametrize("name", ["motion_blur", "snow"])
def test_blur_and_streak_directions_have_the_reference_distribution(name):
    """The random angle (motion blur: uniform in [-45, 45] deg, snow: [-135, -45]), one per image,
    seen through the direction of the blur of white noise / of the snow streaks on black."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (60, 3, 64, 64), dtype=np.uint8) if name == "motion_blur" else \
        np.zeros((60, 3, 64, 64), np.uint8)
    got = corrupt(torch.from_numpy(base), name, 3, 0).numpy()
    want = []
    for k, im in enumerate(base):
        np.random.seed(k)
        want.append(reference_corrupt(hwc(im), name, 3).transpose(2, 0, 1))
    for a, b in zip(direction_statistics(got), direction_statistics(np.stack(want))):
        assert abs(a.mean() - b.mean()) < 0.2 and 0.7 < a.std() / b.std() < 1.4, (a.mean(), b.mean(), a.std(), b.std())


def test_impulse_noise_replaces_the_reference_fraction_half_salt_half_pepper():
    x = np.full((8, 3, 64, 64), 128, np.uint8)
    for severity, amount in zip(SEVERITIES, C.IMPULSE_NOISE):
        y = corrupt(torch.from_numpy(x), "impulse_noise", severity, 0).numpy()
        salt, pepper = (y == 255).mean(), (y == 0).mean()
        assert set(np.unique(y)) <= {0, 128, 255}
        assert abs(salt + pepper - amount) < 0.01 and abs(salt - pepper) < 0.01, (severity, salt, pepper)


@pytest.mark.parametrize("name", NAMES)
def test_damage_across_severities_orders_as_in_the_reference(name):
    mad_o = np.array([np.abs(ours(name, s).astype(float) - sample_images()).mean() for s in SEVERITIES])
    mad_r = np.array([np.abs(reference(name, s).astype(float) - sample_images()).mean() for s in SEVERITIES])
    if name in NOT_MONOTONE_IN_REFERENCE:
        assert not np.all(np.diff(mad_r) > 0), f"{name}: the reference became monotone; update the test"
        assert np.array_equal(np.sign(np.diff(mad_o)), np.sign(np.diff(mad_r))), (mad_o, mad_r)
    else:
        assert np.all(np.diff(mad_o) > 0), f"{name}: ours {mad_o}"
        assert np.all(np.diff(mad_r) > 0), f"{name}: reference {mad_r}"


# ----------------------------------------------------------------------------------------------
# pieces checked directly


def test_shot_noise_alias_tables_give_the_poisson_probabilities():
    from scipy.stats import poisson

    for c in C.SHOT_NOISE:
        prob, outcome = (t.numpy().astype(np.float64) for t in C.noise._shot_alias_cpu(c))
        m = c + 1
        prob, outcome = prob.reshape(256, m), outcome.reshape(256, m, 2)  # [..., 0] alias, [..., 1] own
        for k in range(0, 256, 5):
            got = np.zeros(256)
            np.add.at(got, outcome[k, :, 1].astype(int), prob[k] / m)
            np.add.at(got, outcome[k, :, 0].astype(int), (1 - prob[k]) / m)
            want = np.zeros(256)
            lam = k / 255 * c
            for K in range(c):
                want[np.uint8(np.clip(K / float(c), 0, 1) * 255)] += poisson.pmf(K, lam)
            want[255] += poisson.sf(c - 1, lam)
            assert np.abs(got - want).max() < 1e-6, (c, k)


def sequential_glass_copies(image: np.ndarray, delta: int, offsets: np.ndarray) -> np.ndarray:
    """imagecorruptions' loop, verbatim semantics: ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` on
    numpy views copies x[h2, w2] into x[h, w] (and leaves x[h2, w2])."""
    x = image.copy()
    h_, w_ = x.shape[:2]
    for it in range(offsets.shape[0]):
        i = 0
        for h in range(h_ - delta, delta, -1):
            for w in range(w_ - delta, delta, -1):
                dx, dy = offsets[it, i]
                i += 1
                x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
    return x


@pytest.mark.parametrize("delta,iterations", [(1, 2), (2, 3), (4, 2)])
def test_glass_source_map_reproduces_the_sequential_swaps(delta, iterations):
    rng = np.random.default_rng(delta)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    offsets = rng.integers(-delta, delta, size=(3, iterations, (40 - 2 * delta) * (48 - 2 * delta), 2))
    sources = C.glass_source_map(40, 48, delta, offsets)  # three images' maps at once
    for k in range(3):
        want = sequential_glass_copies(image, delta, offsets[k])
        got = image.reshape(-1, 3)[sources[k]].reshape(image.shape)
        assert np.array_equal(got, want), f"image {k}"
        assert not np.array_equal(got, image)


def test_defocus_kernels_match_the_reference_disk():
    for severity, (radius, alias) in enumerate(C.DEFOCUS_BLUR, 1):
        ref = ic.disk(radius=radius, alias_blur=alias)
        ours_k = C.defocus_kernel(radius, alias)
        pad = (ref.shape[0] - ours_k.shape[0]) // 2
        full = np.zeros_like(ref)
        full[pad:pad + ours_k.shape[0], pad:pad + ours_k.shape[0]] = ours_k
        assert np.abs(full - ref).max() < 1e-8
        assert float(ref.astype(np.float64).sum()) == C.DEFOCUS_KERNEL_SUMS[severity - 1]


def test_luma_is_pil_convert_l():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    want = np.stack([np.array(Image.fromarray(hwc(im)).convert("L")) for im in rgb])[:, None]
    assert np.array_equal(luma(torch.from_numpy(rgb)).numpy(), want)


def test_frost_textures_are_the_pinned_files(monkeypatch):
    for name, digest in C.FROST_FILES.items():
        assert hashlib.sha256((C.FROST_DIR / name).read_bytes()).hexdigest() == digest
    import imagecorruptions

    for name in C.FROST_FILES:  # byte for byte the reference's files
        theirs = Path(imagecorruptions.__file__).parent / "frost" / name
        assert theirs.read_bytes() == (C.FROST_DIR / name).read_bytes()
    C.weather._frost_image.cache_clear()
    monkeypatch.setitem(C.FROST_FILES, "frost2.png", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        C.weather._frost_image("frost2.png")
    C.weather._frost_image.cache_clear()


# ----------------------------------------------------------------------------------------------
# grey images, devices, determinism


@pytest.mark.parametrize("name", NAMES)
def test_grey_images_are_corrupted_as_rgb_and_converted_with_pil_luma(name):
    grey = torch.from_numpy(sample_images()[:, :1].copy())
    got = corrupt(grey, name, 3, 7)
    assert got.shape == grey.shape and got.dtype == torch.uint8
    assert torch.equal(got, luma(corrupt(grey.expand(-1, 3, -1, -1).contiguous(), name, 3, 7)))
    if name in DETERMINISTIC:
        want = np.stack([np.array(Image.fromarray(reference_corrupt(im[0], name, 3)).convert("L"))
                         for im in grey.numpy()])[:, None]
        assert_close(got.numpy(), want, *EXACT[name], f"grey {name}")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_output_is_uint8_of_the_input_shape_on_the_input_device(name, device):
    for channels in (3, 1):
        x = torch.from_numpy(sample_images()[:3, :channels].copy()).to(device)
        y = corrupt(x, name, 2, 0)
        assert y.dtype == torch.uint8 and y.shape == x.shape and y.device == x.device
    if device != "cpu" and name in DETERMINISTIC:
        assert_close(corrupt(x, name, 2, 0).cpu().numpy(), corrupt(x.cpu(), name, 2, 0).numpy(), 1, 0.01, name)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_different_seed_differs_for_random_corruptions(name):
    x = torch.from_numpy(sample_images()[:3])
    a, b, c = corrupt(x, name, 4, 1), corrupt(x, name, 4, 1), corrupt(x, name, 4, 2)
    assert torch.equal(a, b)
    if name in DETERMINISTIC:
        assert torch.equal(a, c)
    else:
        assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(corrupt(x, name, 4, g1), corrupt(x, name, 4, g2))
    assert torch.equal(corrupt(x, name, 4, g1), corrupt(x, name, 4, g2))  # both advanced alike


def test_result_does_not_depend_on_the_number_of_workers():
    x = torch.from_numpy(np.concatenate([sample_images()] * 40))  # 280 images: several chunks (not for all)
    for name in ("gaussian_noise", "glass_blur", "elastic_transform", "brightness"):
        assert torch.equal(corrupt(x, name, 2, 3, workers=1), corrupt(x, name, 2, 3, workers=2))


def test_images_of_a_batch_get_independent_draws():
    x = torch.from_numpy(np.repeat(sample_images()[:1], 6, axis=0))
    for name in RANDOM:
        y = corrupt(x, name, 3, 0)
        assert len({bytes(im.numpy()) for im in y}) == 6, name


# ----------------------------------------------------------------------------------------------
# compiled CPU kernels (neurobias.robustness.cpu_kernels) against the torch form (the GPU's)

KERNELS_NOT_IDENTICAL = {  # name: (max, frac): their float32 sums run in another order than torch's
    "glass_blur": (1, 0.001),  # measured: <= 2.7e-4 of the values on 1000 synthetic images
}


@functools.lru_cache(maxsize=None)
def kernel_test_images() -> np.ndarray:
    """The sample images and 57 synthetic-task images: 64 in all, two chunks for most corruptions."""
    return np.concatenate([sample_images(), make_synthetic_task(1, 0, 0, 57, image_size=SIZE)["test"][0]])


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls of every public cpu_kernels function made through the module."""
    from neurobias.robustness import cpu_kernels

    calls = []
    for attribute in dir(cpu_kernels):
        fn = getattr(cpu_kernels, attribute)
        if not attribute.startswith("_") and hasattr(fn, "py_func"):
            def counted(*args, _fn=fn, _name=attribute):
                calls.append(_name)
                return _fn(*args)

            monkeypatch.setattr(cpu_kernels, attribute, counted)
    return calls


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_cpu_kernels_give_the_torch_forms_output(name, severity, monkeypatch, kernel_calls):
    """Identical (same draws, same float32 operations in the same order, FMAs where torch uses
    them), except where stated; and the kernels are really what runs (or not) on the CPU."""
    x = torch.from_numpy(kernel_test_images())
    fast = corrupt(x, name, severity, 7)
    used = len(kernel_calls)
    monkeypatch.setattr(C, "CPU_KERNELS", False)
    torch_form = corrupt(x, name, severity, 7)
    if name not in ("gaussian_noise", "defocus_blur", "zoom_blur", "jpeg_compression"):  # these have no kernel
        assert used > 0, f"{name}: no CPU kernel ran"
    # the glass map is made by its kernel for every device; nothing else may run with the flag off
    assert all(call == "glass_source_map" for call in kernel_calls[used:]), kernel_calls[used:]
    max_diff, max_frac = KERNELS_NOT_IDENTICAL.get(name, (0, 0.0))
    assert_close(fast.numpy(), torch_form.numpy(), max_diff, max_frac, f"{name} severity {severity}: kernels vs torch")


@pytest.mark.parametrize("name", NAMES)
def test_cpu_kernels_give_the_torch_forms_output_on_non_square_images(name, monkeypatch):
    """Rows and columns are not interchangeable anywhere (48 x 40 and 40 x 56, severity 3)."""
    rng = np.random.default_rng(4)
    for h, w in ((48, 40), (40, 56)):
        smooth = make_synthetic_task(2, 0, 0, 6, image_size=max(h, w))["test"][0][:, :, :h, :w]
        x = torch.from_numpy(np.concatenate([smooth, rng.integers(0, 256, (2, 3, h, w), dtype=np.uint8)]))
        monkeypatch.setattr(C, "CPU_KERNELS", True)
        fast = corrupt(x, name, 3, 1)
        monkeypatch.setattr(C, "CPU_KERNELS", False)
        max_diff = KERNELS_NOT_IDENTICAL.get(name, (0, 0.0))[0]
        max_frac = 0.002 if name in KERNELS_NOT_IDENTICAL else 0.0  # 8 small images: one value is ~1e-4
        assert_close(fast.numpy(), corrupt(x, name, 3, 1).numpy(), max_diff, max_frac, f"{name} {h}x{w}")


def test_image_filters_convolve_in_full_float32_on_a_gpu(monkeypatch):
    """torch runs cuDNN's float32 convolutions in TF32 on Ampere and newer GPUs by default (inputs
    rounded to a 10-bit mantissa): the blurs, whose ties are resolved to TIE_EPS of a grey level,
    and Geirhos's low-pass filter convolve in IEEE float32 instead. Checked on the meta device (a
    non-CPU device takes the GPU branch) by the setting each convolution sees."""
    from neurobias.robustness import manipulations
    from neurobias.robustness.corruptions import blur
    from neurobias.robustness.filters import exact_fp32_convolutions
    seen, conv2d = [], torch.nn.functional.conv2d

    def recording_conv2d(*args, **kwargs):
        seen.append(torch.backends.cudnn.conv.fp32_precision)
        return conv2d(*args, **kwargs)

    before = torch.backends.cudnn.conv.fp32_precision
    monkeypatch.setattr(blur.F, "conv2d", recording_conv2d, raising=True)
    blur._planes_conv(torch.zeros(3, 8, 8, device="meta"), torch.ones(3, 3), channels_last=False)
    manipulations.gaussian_blur(torch.zeros(2, 1, 8, 8), 1.0, 1.0, 0.5)
    assert seen == ["ieee"] * 3 and torch.backends.cudnn.conv.fp32_precision == before
    with pytest.raises(RuntimeError), exact_fp32_convolutions():
        raise RuntimeError("the setting is restored on the way out")
    assert torch.backends.cudnn.conv.fp32_precision == before
