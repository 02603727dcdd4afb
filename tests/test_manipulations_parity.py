"""Parity of the Geirhos et al. 2018 phase noise and false colour with the authors' code.

Reference outputs were computed once from github.com/rgeirhos/generalisation-humans-DNNs,
``code/image_manipulation.py`` at commit 0b88343536ec21acc2d635c0e325f827111e149a
(``phase_scrambling``, ``false_colour``), on the inputs and random draws stored in
``tests/fixtures/parity/geirhos_manipulations.npz``; ``geirhos_manipulations.json`` says how."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from neurobias.robustness.manipulations import (
    MONITOR_TABLE, PHASE_NOISE_METHODS, authors_phase_shifts, false_colour, manipulation_accuracy, phase_noise,
    to_grey)

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "geirhos_manipulations.npz"
SIDECAR = FIXTURE.with_suffix(".json")
SEED = 31          # the generator that drew ``phase_draws``


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def nchw(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).to(dtype) / 255.0


def test_fixture_names_its_source_and_is_intact():
    meta = json.loads(SIDECAR.read_text())
    assert meta["repository"] == "https://github.com/rgeirhos/generalisation-humans-DNNs"
    assert meta["path"] == "code/image_manipulation.py"
    assert len(meta["commit"]) == 40
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == meta["sha256"]
    assert FIXTURE.stat().st_size < 200_000


# ---------------------------------------------------------------------------------------------
# false colour
# ---------------------------------------------------------------------------------------------

def test_monitor_table_is_theirs(ref):
    table = np.asarray(MONITOR_TABLE)
    assert table.shape == (256,) and np.array_equal(table, ref["monitor_table"])
    assert np.all(np.diff(table) > 0) and table[0] == 0 and table[-1] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_false_colour_reproduces_their_false_colour_exactly(ref, dtype):
    """Every 8-bit value of 3 x 64 x 64 x 3 equals theirs (their output is k / 255 as ours)."""
    y = false_colour(nchw(ref["images"], dtype), 1)
    assert y.dtype == dtype
    k = (y * 255).round()
    torch.testing.assert_close(y * 255, k, rtol=0, atol=1e-4)
    assert torch.equal(k.to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(ref["false_colour"]))
    assert (ref["false_colour"] != ref["images"]).mean() > 0.9          # not a trivial pass


def test_false_colour_keeps_grey_exactly():
    g = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 16, 16).repeat(1, 3, 1, 1)
    assert torch.equal(false_colour(g, 1), g)


# ---------------------------------------------------------------------------------------------
# phase noise
# ---------------------------------------------------------------------------------------------

def test_the_draws_are_torch_rand_of_the_seeded_generator(ref):
    """Documents the random numbers the reference was fed: one torch.rand([N, L // 2]) per call."""
    draws = torch.rand(ref["phase_draws"].shape, generator=torch.Generator().manual_seed(SEED))
    assert np.array_equal(draws.numpy(), ref["phase_draws"])


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_phase_noise_default_reproduces_their_phase_scrambling(ref, dtype, atol):
    """The default (``authors``) on a batch, one seeded generator across the levels, equals their
    per-image ``phase_scrambling`` fed the same draws: to 1e-12 in float64, 2e-6 in float32."""
    x = nchw(ref["phase_images"], dtype)
    gen = torch.Generator().manual_seed(SEED)
    for i, width in enumerate(ref["phase_levels"]):
        y = phase_noise(x, float(width), gen)
        assert y.shape == x.shape and torch.equal(y[:, :1].expand_as(y), y)
        torch.testing.assert_close(y[:, 0].double(), torch.from_numpy(ref["phase_noise"][i]), rtol=0, atol=atol)


def test_authors_phase_shifts_from_the_stored_draws(ref):
    """The same without torch's generator: their shifts placed by ``authors_phase_shifts``."""
    g = to_grey(nchw(ref["phase_images"], torch.float64))
    h, w = g.shape[-2:]
    for i, width in enumerate(ref["phase_levels"]):
        u = torch.from_numpy(ref["phase_draws"][i]).double()
        phi = authors_phase_shifts((u - 0.5) * 2 * float(width) / 180 * math.pi, h, w)
        y = torch.fft.ifft2(torch.fft.fft2(g) * torch.polar(torch.ones_like(phi), phi)).real.clamp(0, 1)
        torch.testing.assert_close(y[:, 0], torch.from_numpy(ref["phase_noise"][i]), rtol=0, atol=1e-12)


def _unclipped(g, width, method, seed):
    """Phase-noised images before clipping: images near mid-grey, so nothing clips."""
    y = phase_noise(g, width, torch.Generator().manual_seed(seed), method=method)
    assert 0 < y.min() and y.max() < 1
    return y


def _ac_power(z):
    return (z - z.mean(dim=(2, 3), keepdim=True)).double().pow(2).sum(dim=(2, 3))


@pytest.mark.parametrize("width", [30.0, 60.0, 90.0, 120.0, 150.0, 180.0])
def test_hermitian_keeps_all_power_and_authors_keeps_the_measured_fraction(width):
    """``hermitian`` keeps the amplitude spectrum; their pairing keeps (1 + sinc(w)^2) / 2 of the
    AC power on average (0.956, 0.842, 0.703, 0.585, 0.518, 0.500), as measured on their code."""
    gen = torch.Generator().manual_seed(0)
    g = 0.5 + 0.1 * F.avg_pool2d(torch.randn(64, 1, 66, 66, generator=gen), 3, stride=1)   # 64 x 64
    herm = _unclipped(g, width, "hermitian", 1)
    torch.testing.assert_close(torch.fft.fft2(herm.double()).abs(), torch.fft.fft2(g.double()).abs(),
                               rtol=1e-3, atol=1e-3)                   # float32 FFTs of 64 x 64 sums
    torch.testing.assert_close(_ac_power(herm) / _ac_power(g), torch.ones(64, 1, dtype=torch.float64),
                               rtol=0, atol=1e-5)
    auth = _unclipped(g, width, "authors", 1)
    kept = float((_ac_power(auth) / _ac_power(g)).mean())
    sinc = math.sin(math.radians(width)) / math.radians(width)
    assert abs(kept - (1 + sinc ** 2) / 2) < 0.005, kept                 # 0.0002 here
    torch.testing.assert_close(auth.mean(dim=(2, 3)), g.mean(dim=(2, 3)), rtol=0, atol=1e-5)   # DC kept


def test_authors_phase_noise_on_odd_sizes_and_per_channel():
    """Their code needs even sizes; odd dimensions keep all their rows / columns (the centred
    block). The mean is kept, and grey=False gives every channel the same shifts."""
    gen = torch.Generator().manual_seed(0)
    g = 0.5 + 0.05 * torch.randn(2, 1, 15, 20, generator=gen)
    y = phase_noise(g, 90.0, torch.Generator().manual_seed(1))
    assert y.shape == g.shape and not torch.allclose(y, g, atol=1e-3)
    torch.testing.assert_close(y.mean(dim=(2, 3)), g.mean(dim=(2, 3)), rtol=0, atol=1e-6)
    x3 = g.repeat(1, 3, 1, 1)
    y3 = phase_noise(x3, 90.0, torch.Generator().manual_seed(1), grey=False)
    torch.testing.assert_close(y3, y.repeat(1, 3, 1, 1), rtol=0, atol=1e-6)
    for h, w in ((5, 7), (6, 7), (6, 8)):           # block (h or h - 1) x (w or w - 1), odd x odd
        half = (h - 1 + h % 2) * (w - 1 + w % 2) // 2
        assert authors_phase_shifts(torch.zeros(1, half), h, w).shape == (1, 1, h, w)
    with pytest.raises(ValueError, match="shifts"):
        authors_phase_shifts(torch.zeros(1, 5), 6, 8)


def test_phase_noise_method_is_checked_and_reaches_the_evaluation():
    assert PHASE_NOISE_METHODS == ("authors", "hermitian")
    x = torch.full((2, 1, 8, 8), 0.5)
    with pytest.raises(ValueError, match="method"):
        phase_noise(x, 90.0, torch.Generator(), method="numpy")

    class Seen(torch.nn.Module):
        images = []

        def forward(self, z):
            self.images.append(z.clone())
            return torch.zeros(len(z), 2)

    gen = torch.Generator().manual_seed(0)
    imgs = (0.5 + 0.1 * torch.randn(4, 1, 8, 8, generator=gen)).clamp(0, 1)
    for method in PHASE_NOISE_METHODS:
        m = Seen()
        m.images = []
        manipulation_accuracy(m, imgs, torch.zeros(4, dtype=torch.long), {"phase_noise": [90.0]},
                              progress=False, phase_noise_method=method)
        seen = m.images[0]
        kept = float((_ac_power(seen) / _ac_power(imgs)).mean())
        assert (kept > 0.99) == (method == "hermitian"), (method, kept)
    with pytest.raises(ValueError, match="phase_noise_method"):
        manipulation_accuracy(Seen(), imgs, torch.zeros(4, dtype=torch.long), ["phase_noise"], progress=False,
                              phase_noise_method="bogus")
