"""Geirhos et al. 2018 image manipulations: identity levels, the documented effect at extreme
levels, seeding, both channel counts, and the accuracy / response-entropy evaluation (also of several
models scored on images made once)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurobias.robustness.manipulations import (
    FALSE_COLOUR_MATRIX, LUMA_WEIGHTS, MANIPULATIONS, NOISE_CONTRAST, contrast, eidolon, eidolon_displacements,
    false_colour, greyscale, high_pass, low_pass, manipulation_accuracies, manipulation_accuracy, manipulation_seed, mean_amplitude_spectrum,
    phase_noise,
    power_equalisation, response_entropy, rotation, to_grey, uniform_noise)
from test_evaluation_sharing import SPEC, PixelVote, uint8_images

GREY_BASED = ("contrast", "low_pass", "high_pass", "phase_noise", "power_equalisation", "rotation")
RANDOM = ("uniform_noise", "phase_noise", "eidolon")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def smooth(n=6, c=1, s=32, seed=0, lo=0.1, hi=0.9, blur=1.5):
    """Random smooth images spanning [lo, hi] (per image)."""
    g = gen(seed)
    z = torch.randn(n, c, s, s, generator=g)
    k = torch.exp(-0.5 * (torch.arange(-4, 5) / blur) ** 2)
    k = k / k.sum()
    z = F.conv2d(F.pad(z.reshape(n * c, 1, s, s), (4, 4, 4, 4), mode="circular"), k.view(1, 1, 1, -1))
    z = F.conv2d(z, k.view(1, 1, -1, 1)).reshape(n, c, s, s)
    mn = z.amin(dim=(1, 2, 3), keepdim=True)
    mx = z.amax(dim=(1, 2, 3), keepdim=True)
    return lo + (hi - lo) * (z - mn) / (mx - mn)


def grey3(n=6, s=32, seed=0, **kw):
    """Grey images with three equal channels."""
    return smooth(n, 1, s, seed, **kw).repeat(1, 3, 1, 1)


def spectrum(x):
    return torch.fft.fft2(x.double()).abs()


# ---------------------------------------------------------------------------------------------
# registry and identity levels
# ---------------------------------------------------------------------------------------------

def test_registry_has_the_geirhos_levels():
    assert MANIPULATIONS["contrast"].levels == (1.0, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03, 0.01)
    assert MANIPULATIONS["uniform_noise"].levels == (0.0, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9)
    assert MANIPULATIONS["low_pass"].levels == (0, 1, 3, 5, 7, 10, 15, 40)
    assert MANIPULATIONS["high_pass"].levels == (math.inf, 3, 1.5, 1, 0.7, 0.55, 0.45, 0.4)
    assert MANIPULATIONS["phase_noise"].levels == (0, 30, 60, 90, 120, 150, 180)
    assert MANIPULATIONS["rotation"].levels == (0, 90, 180, 270)
    assert MANIPULATIONS["eidolon"].levels == tuple(2.0 ** k for k in range(8))
    for name, (fn, levels, identity) in MANIPULATIONS.items():
        assert callable(fn) and len(levels) >= 2, name


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("name", sorted(MANIPULATIONS))
def test_identity_level_returns_grey_input(name, c):
    """On grey inputs every identity level is the identity (exact: nothing is computed);
    uniform noise's level 0 is the 30 %-contrast image, and the input at contrast 1."""
    x = smooth(c=1).repeat(1, c, 1, 1)
    fn, _, identity = MANIPULATIONS[name]
    y = fn(x, identity, gen())
    assert y.shape == x.shape
    if name == "uniform_noise":
        torch.testing.assert_close(y, contrast(x, NOISE_CONTRAST), rtol=0, atol=1e-6)
        assert y.std() < 0.5 * x.std()
        torch.testing.assert_close(uniform_noise(x, 0.0, gen(), contrast_level=1.0), x, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", GREY_BASED + ("eidolon",))
def test_identity_level_of_grey_based_manipulations_on_colour_is_the_grey_image(name):
    x = smooth(c=3)
    fn, _, identity = MANIPULATIONS[name]
    y = fn(x, identity, gen())
    torch.testing.assert_close(y, greyscale(x, 1), rtol=0, atol=1e-6)
    assert not torch.allclose(y, x, atol=1e-2)
    if name != "eidolon":      # per-channel variant: the input itself
        torch.testing.assert_close(fn(x, identity, gen(), grey=False), x, rtol=0, atol=0)


def test_numerical_paths_are_the_identity_in_the_limit():
    """Tiny levels run the FFT / resampling code: the round trip is exact to float32 (1e-5, 1e-4)."""
    x = smooth(c=1)
    torch.testing.assert_close(phase_noise(x, 1e-9, gen()), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(power_equalisation(x[:1], 1), x[:1], rtol=0, atol=1e-5)  # own spectrum
    torch.testing.assert_close(eidolon(x, 1e-6, gen()), x, rtol=0, atol=1e-4)
    torch.testing.assert_close(low_pass(x, 1e-3), x, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# documented effects
# ---------------------------------------------------------------------------------------------

def test_greyscale_gives_equal_channels_with_rgb2gray_weights():
    x = smooth(c=3)
    y = greyscale(x, 1)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1
    assert torch.allclose(greyscale(red, 1), torch.full((1, 3, 2, 2), LUMA_WEIGHTS[0]))
    assert greyscale(x, 0) is x


def test_contrast_one_percent_scales_std_around_mid_grey():
    x = smooth(c=3)
    g = to_grey(x)
    y = contrast(x, 0.01)
    std_ratio = y[:, :1].std(dim=(1, 2, 3)) / g.std(dim=(1, 2, 3))
    torch.testing.assert_close(std_ratio, torch.full_like(std_ratio, 0.01), rtol=1e-4, atol=0)
    torch.testing.assert_close(y[:, :1].mean(dim=(1, 2, 3)), 0.5 + 0.01 * (g.mean(dim=(1, 2, 3)) - 0.5))


def test_uniform_noise_is_uniform_in_plus_minus_width_on_mid_grey():
    x = torch.full((64, 3, 32, 32), 0.5)
    w = 0.2
    d = uniform_noise(x, w, gen(1)) - 0.5          # no clipping possible: 0.5 +- 0.2
    assert torch.equal(d[:, 0], d[:, 2])           # one grey noise plane
    d = d[:, 0]
    assert d.min() >= -w and d.max() <= w and d.min() < -0.99 * w and d.max() > 0.99 * w
    assert abs(float(d.var()) - w ** 2 / 3) < 0.02 * w ** 2 / 3      # 65536 draws: sd of var ~0.5 %
    assert abs(float(d.mean())) < 0.002
    hist = torch.histc(d, bins=4, min=-w, max=w) / d.numel()
    assert torch.allclose(hist, torch.full((4,), 0.25), atol=0.01)
    big = uniform_noise(x, 0.9, gen(1))            # clipped
    assert big.min() == 0.0 and big.max() == 1.0


def test_low_pass_preserves_mean_reduces_high_frequencies_and_scales_with_image_size():
    s = 64
    x = torch.full((4, 1, s, s), 0.4423)            # background grey, texture away from the borders
    x[:, :, 24:40, 24:40] = smooth(4, 1, 16, lo=0.2, hi=0.8, blur=0.7)
    y = low_pass(x, 5.0)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), rtol=0, atol=1e-6)
    hf = lambda z: spectrum(z)[..., s // 4: 3 * s // 4, :].pow(2).sum()     # |f_y| >= 1/4 cycle/px
    assert hf(y) < 2e-3 * hf(x)
    # std in pixels is level * size / 224: a point spread's variance is sigma^2
    d = torch.zeros(1, 1, s, s)
    d[0, 0, s // 2, s // 2] = 1.0
    p = low_pass(d, 7.0, background=0.0)[0, 0].double()
    p = p / p.sum()
    r = torch.arange(s, dtype=torch.float64) - s // 2
    var_rows = float((p.sum(1) * r ** 2).sum())
    assert abs(var_rows - (7.0 * s / 224) ** 2) < 0.02 * (7.0 * s / 224) ** 2


def test_high_pass_removes_the_mean_except_the_added_grey():
    x = smooth(6, 1, 32, lo=0.35, hi=0.55)
    y = high_pass(x, 3.0)
    assert 0 < y.min() and y.max() < 1                 # nothing clipped here
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.full((6,), 0.4423), rtol=0, atol=1e-6)
    low = lambda z: spectrum(z - z.mean(dim=(2, 3), keepdim=True))[..., :2, :2].sum()
    assert low(y) < 0.05 * low(x)                      # the coarse structure is gone
    flat = torch.full((2, 1, 32, 32), 0.9)
    torch.testing.assert_close(high_pass(flat, 15.0).mean(dim=(1, 2, 3)), torch.full((2,), 0.4423), rtol=0, atol=1e-6)
    grey = torch.full((2, 1, 32, 32), 0.4423)
    torch.testing.assert_close(high_pass(grey, 15.0), grey, rtol=0, atol=1e-6)


def test_phase_noise_keeps_amplitudes_and_decorrelates_as_sinc():
    """The ``hermitian`` option (the default, their pairing, is tested in test_manipulations_parity)."""
    x = smooth(32, 1, 32, lo=0.4, hi=0.6, blur=0.5)
    y = phase_noise(x, 180.0, gen(3), method="hermitian")
    assert 0 < y.min() and y.max() < 1
    torch.testing.assert_close(spectrum(y), spectrum(x), rtol=1e-3, atol=1e-3)

    def corr(a, b):
        a = a - a.mean(dim=(2, 3), keepdim=True)
        b = b - b.mean(dim=(2, 3), keepdim=True)
        return ((a * b).sum(dim=(1, 2, 3)) / (a.norm(dim=(2, 3)) * b.norm(dim=(2, 3))).squeeze(1)).mean()

    assert abs(float(corr(x, y))) < 0.05                     # E[cos U(-pi, pi)] = 0
    for w in (30.0, 90.0):                                   # E[cos U(-w, w)] = sin(w) / w
        expected = math.sin(math.radians(w)) / math.radians(w)
        assert abs(float(corr(x, phase_noise(x, w, gen(4), method="hermitian"))) - expected) < 0.02
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), rtol=0, atol=1e-5)


def test_power_equalisation_gives_every_image_the_mean_amplitude_spectrum():
    x = smooth(8, 3, 32, lo=0.4, hi=0.6)
    m = mean_amplitude_spectrum(x)
    assert m.shape == (1, 1, 32, 32)
    y = power_equalisation(x, 1, mean_amplitude=m)
    assert 0 < y.min() and y.max() < 1
    a = spectrum(y[:, :1])
    torch.testing.assert_close(a, m.double().expand_as(a), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(power_equalisation(x, 1), y, rtol=0, atol=1e-6)   # batch mean = set mean
    # with the set's spectrum, an image's result does not depend on its batch
    torch.testing.assert_close(power_equalisation(x[:3], 1, mean_amplitude=m), y[:3], rtol=0, atol=1e-6)
    # phases are kept where the amplitude is not tiny
    fx, fy = torch.fft.fft2(to_grey(x).double()), torch.fft.fft2(y[:, :1].double())
    keep = (fx.abs() > 1e-2) & (m.double().expand_as(fx) > 1e-2)
    assert keep.float().mean() > 0.2
    dphi = torch.angle(fy[keep] * fx[keep].conj())
    assert dphi.abs().max() < 1e-2


def test_rotation_four_quarter_turns_are_the_identity():
    x = smooth(c=3)
    g = greyscale(x, 1)
    g1 = to_grey(x)
    y = g1
    for _ in range(4):
        y = rotation(y, 90)
    assert torch.equal(y, g1)
    assert torch.equal(rotation(x, 90), torch.rot90(g, 1, dims=(2, 3)))
    assert torch.equal(rotation(rotation(g1, 180), 180), g1)
    assert torch.equal(rotation(rotation(g1, 90), 270), g1)
    assert not torch.allclose(rotation(x, 270), g)
    with pytest.raises(ValueError):
        rotation(torch.rand(1, 1, 4, 6), 90)


def test_false_colour_is_an_involution_that_swaps_opponent_colours():
    """Through their measured monitor table: 8-bit in and out, so on mild colours twice is the
    identity to a grey level."""
    x = (grey3(lo=0.45, hi=0.75) * 255).round() / 255
    x[:, 0] += 20 / 255                                  # reddish, mild: nothing clips
    y = false_colour(x, 1)
    assert 0 < y.min() and y.max() < 1
    torch.testing.assert_close(y * 255, (y * 255).round(), rtol=0, atol=1e-4)   # 8-bit values
    torch.testing.assert_close(false_colour(y, 1), x, rtol=0, atol=1.01 / 255)
    assert (y[:, 1] > y[:, 0]).float().mean() > 0.99     # red became green
    a = torch.as_tensor(FALSE_COLOUR_MATRIX)
    torch.testing.assert_close(a @ a, torch.eye(3, dtype=a.dtype), rtol=0, atol=1e-10)
    g = grey3()
    torch.testing.assert_close(false_colour(g, 1), (g * 255).round() / 255, rtol=0, atol=1e-6)  # grey stays grey
    g1 = smooth(c=1)
    assert false_colour(g1, 1) is g1                     # no colour to invert


def test_eidolon_displacement_grows_with_reach_and_keeps_local_mean():
    x = smooth(6, 1, 32, blur=1.0)
    diffs = [float((eidolon(x, r, gen(7)) - x).abs().mean()) for r in (0, 1, 2, 4, 8, 16, 32, 64, 128)]
    assert diffs[0] == 0.0
    assert all(b > a for a, b in zip(diffs, diffs[1:])), diffs
    assert diffs[-1] > 0.05 and diffs[1] < 0.01
    y = eidolon(x, 16, gen(7))
    assert 0 <= y.min() and y.max() <= 1
    blur = lambda z: low_pass(z, 40.0, background=0.5)          # std 40/224 of the image (5.7 px)
    local = float((blur(y) - blur(x)).abs().mean())
    assert local < 0.3 * float((y - x).abs().mean())
    torch.testing.assert_close(y.mean(), x.mean(), rtol=0, atol=0.02)
    # coherence 0 (incoherent, grain-sized fields) also runs and differs
    z = eidolon(x, 16, gen(7), coherence=0.0)
    assert z.shape == x.shape and not torch.allclose(z, y)


def test_eidolon_displacement_fields_have_the_toolbox_statistics():
    """Coherent fields C_k = sum_{j>=k} P_j with std 0.118 px per unit reach per plane (reference
    px of a 256-px image, the toolbox's amplitude), nested across scales; incoherent fields
    (coherence 0) are independent across scales with std 26.8 / (2 sqrt(pi) grain)."""
    s, reach, keep = 64, 10.0, (0, 5, 11)
    f = s / 256
    unit = 127.5 / 4.75 / (2 * math.sqrt(math.pi))

    def fields(coherence):
        return {k: d.clone() for k, d in eidolon_displacements(16, s, s, reach, gen(2), coherence) if k in keep}

    def corr(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    coh = fields(1.0)
    assert coh[0].shape == (16, 2, 2 * s, 2 * s)
    for k in keep:
        expected = unit / 64 * math.sqrt(12 - k) * reach * f
        assert abs(float(coh[k].std()) / expected - 1) < 0.1, (k, float(coh[k].std()), expected)
    assert abs(corr(coh[0], coh[11]) - 1 / math.sqrt(12)) < 0.06       # nested: fine drags coarse
    inc = fields(0.0)
    for k in keep:
        expected = unit / 10.0 * reach * f                               # grain 10
        assert abs(float(inc[k].std()) / expected - 1) < 0.1, (k, float(inc[k].std()), expected)
    assert abs(corr(inc[0], inc[11])) < 0.06                            # independent per scale


# ---------------------------------------------------------------------------------------------
# seeding, channels, devices
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RANDOM)
def test_random_manipulations_are_seeded(name):
    x = smooth(3, 3, 16)
    fn, levels, _ = MANIPULATIONS[name]
    level = levels[-2]
    a, b, c = fn(x, level, gen(1)), fn(x, level, gen(1)), fn(x, level, gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("c", [1, 3])
def test_every_manipulation_at_every_level_keeps_shape_and_range(c):
    x = smooth(2, c, 16)
    for name, (fn, levels, _) in MANIPULATIONS.items():
        for level in levels:
            y = fn(x, level, gen())
            assert y.shape == x.shape and y.dtype == x.dtype, (name, level)
            assert float(y.min()) >= 0 and float(y.max()) <= 1, (name, level)
            grey_out = name != "false_colour" and not (name == "greyscale" and level == 0)
            if grey_out:
                assert torch.equal(y[:, :1].expand_as(y), y), (name, level)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_gpu_give_the_same_images():
    x = smooth(4, 3, 32)
    for name, (fn, levels, _) in MANIPULATIONS.items():
        for level in levels:
            a = fn(x, level, gen(5))
            b = fn(x.cuda(), level, gen(5)).cpu()
            torch.testing.assert_close(a, b, rtol=0, atol=2e-4, msg=f"{name} {level}")


# ---------------------------------------------------------------------------------------------
# entropy and evaluation
# ---------------------------------------------------------------------------------------------

def test_response_entropy():
    assert response_entropy(torch.arange(160) % 16, 16) == pytest.approx(4.0)
    assert response_entropy(torch.full((50,), 3), 16) == 0.0
    assert response_entropy(torch.tensor([0, 0, 1, 1, 1, 1, 2, 2]), 10) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        response_entropy(torch.tensor([0, 12]), 10)


class Brightness(nn.Module):
    """Class 1 if the mean luminance is above 0.5: blind to colour, rotation and the spectrum."""

    def forward(self, x):
        m = to_grey(x).mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5, torch.full_like(m, -1.0)], dim=1)


def brightness_data(n=40, s=16):
    g = gen(0)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.where(labels == 1, 0.7, 0.3)[:, None, None, None]
    x = base + 0.1 * (torch.rand(n, 3, s, s, generator=g) - 0.5)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels


def test_manipulation_accuracy_records_and_pairing():
    x, y = brightness_data()
    spec = {"greyscale": None, "rotation": [0, 90], "contrast": [1.0, 0.01], "uniform_noise": [0.35]}
    r1 = manipulation_accuracy(Brightness(), x, y, spec, seed=3, batch_size=7, block_size=16, progress=False)
    r2 = manipulation_accuracy(Brightness(), x, y, spec, seed=3, batch_size=40, block_size=16, progress=False)
    assert r1 == r2                                         # the batch size changes nothing
    assert [(r["manipulation"], r["level"]) for r in r1] == [
        ("greyscale", 0.0), ("greyscale", 1.0), ("rotation", 0.0), ("rotation", 90.0),
        ("contrast", 1.0), ("contrast", 0.01), ("uniform_noise", 0.35)]
    by = {(r["manipulation"], r["level"]): r for r in r1}
    assert all(r["n"] == 40 for r in r1)
    assert by[("greyscale", 0.0)]["accuracy"] == by[("rotation", 90.0)]["accuracy"] == 1.0
    balance = float(y.float().mean())
    h = -(balance * math.log2(balance) + (1 - balance) * math.log2(1 - balance))
    assert by[("greyscale", 1.0)]["entropy_bits"] == pytest.approx(h)
    # contrast is scaled around 0.5, so the sign of (mean - 0.5) and this model's answers survive 1 %
    assert by[("contrast", 0.01)]["accuracy"] == 1.0
    r3 = manipulation_accuracy(Brightness(), x, y, {"uniform_noise": [0.35]}, seed=4, block_size=16,
                               progress=False)
    r4 = manipulation_accuracy(Brightness(), x, y, ["uniform_noise"], seed=3, block_size=16, progress=False)
    assert len(r4) == 8 and r4[6]["manipulation"] == "uniform_noise"
    assert r3[0]["n"] == 40
    with pytest.raises(ValueError):
        manipulation_accuracy(Brightness(), x, y, {"blur": None}, progress=False)


class CornerPixel(nn.Module):
    """Reads one pixel: its answers follow the noise sample, so they reveal which images it saw."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([0.5 - p, p - 0.5], dim=1)


def test_manipulation_accuracy_sees_the_documented_seeded_images():
    x, y = brightness_data(100, 8)
    got = manipulation_accuracy(CornerPixel(), x, y, {"uniform_noise": [0.35]}, seed=3, block_size=30,
                                progress=False)[0]
    preds = []
    for b, start in enumerate(range(0, 100, 30)):
        g = torch.Generator().manual_seed(manipulation_seed(3, "uniform_noise", 0.35, b))
        preds.append(CornerPixel()(uniform_noise(x[start:start + 30].float() / 255, 0.35, g)).argmax(1))
    preds = torch.cat(preds)
    assert got["accuracy"] == float((preds == y).double().mean()) < 0.95
    assert got["entropy_bits"] == pytest.approx(response_entropy(preds, 2))
    other = manipulation_accuracy(CornerPixel(), x, y, {"uniform_noise": [0.35]}, seed=4, block_size=30,
                                  progress=False)[0]
    assert other["accuracy"] != got["accuracy"]
    # power equalisation uses the whole set's mean spectrum: the blocks do not matter
    runs = [manipulation_accuracy(CornerPixel(), x, y, {"power_equalisation": [1]}, block_size=bs, progress=False)
            for bs in (7, 100)]
    assert runs[0] == runs[1]


def test_manipulation_accuracy_runs_every_default_manipulation():
    x, y = brightness_data(12, 16)
    rec = manipulation_accuracy(Brightness(), x, y, None, seed=0, block_size=5, progress=False)
    assert len(rec) == sum(len(m.levels) for m in MANIPULATIONS.values())
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["entropy_bits"] <= math.log2(3) + 1e-9 for r in rec)


def test_models_scored_together_on_the_manipulations_match_one_model_at_a_time():
    x, y = uint8_images(40)
    models = [PixelVote(0, 0), PixelVote(5, 9), PixelVote(15, 2)]
    together = manipulation_accuracies(models, x, y, SPEC, seed=3, batch_size=7, block_size=16, progress=False)
    alone = [manipulation_accuracy(PixelVote(m.row, m.col), x, y, SPEC, seed=3, batch_size=7, block_size=16,
                                   progress=False) for m in models]
    assert together == alone
    assert together[0] != together[1]
