"""VOneBlock front end (Dapello et al. 2020): filter bank, V1-like parameters vs the uniform
control, simple/complex cells, Poisson-like noise, and the ``vone`` model option (training step,
taps, save/load)."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from neurobias.layer_names import (ARCHITECTURE_OPTIONS, ARCHITECTURE_TAPS, CLASSIFIER_OPTIONS, VONE_OPTIONS,
                                   taps_for)
from neurobias.models import build_classifier
from neurobias.models.vone import VONE_DEFAULTS, VOneBlock, VOneFront, sample_gabor_parameters, vone_options


def block(**kw):
    args = dict(in_channels=1, image_size=32, simple_channels=16, complex_channels=16, kernel_size=7, stride=1,
                noise=False, seed=0)
    args.update(kw)
    return VOneBlock(**args)


def grating(size, sf, theta, phase):
    """cos(2 pi f u + phase) on a size x size grid centred like the kernels (x = column, y = row)."""
    r = size // 2
    y, x = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    u = math.cos(theta) * x + math.sin(theta) * y
    return torch.cos(2 * math.pi * sf * u + phase)


def test_filter_bank_shapes_and_buffers():
    b = block(in_channels=3, simple_channels=5, complex_channels=7, stride=2)
    assert b.out_channels == 12
    assert b.weight_q0.shape == b.weight_q1.shape == (12, 3, 7, 7)
    # each Gabor sits on one input channel
    nonzero = b.weight_q0.abs().sum(dim=(2, 3)) > 0
    assert (nonzero.sum(1) == 1).all()
    assert torch.equal(nonzero.float().argmax(1), b.input_channel)
    assert list(b.parameters()) == []  # fixed: buffers, not parameters
    assert {"weight_q0", "weight_q1", "theta", "sf", "nx", "ny", "phase"} <= set(b.state_dict())
    out = b(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 12, 16, 16)


@pytest.mark.parametrize("parameters", ["v1", "uniform"])
def test_filters_have_the_sampled_orientation_and_frequency(parameters):
    b = block(simple_channels=32, complex_channels=32, kernel_size=21, parameters=parameters)
    n_fft = 256
    freqs = np.fft.fftfreq(n_fft)
    checked = 0
    for k in range(b.out_channels):
        sx, sy = float(b.sigma_x[k]), float(b.sigma_y[k])
        if min(sx, sy) < 1.0:
            continue  # sub-pixel envelopes: nearly flat spectra, no well-defined peak
        # q0 - i q1 = envelope * exp(+i (2 pi f u + phase)): one spectral lobe, at exactly +f for a
        # centro-symmetric non-negative (even truncated) envelope.
        g = b.weight_q0[k, 0].double().numpy() - 1j * b.weight_q1[k, 0].double().numpy()
        spectrum = np.abs(np.fft.fft2(g, s=(n_fft, n_fft)))
        row, col = np.unravel_index(spectrum.argmax(), spectrum.shape)
        fy, fx = freqs[row], freqs[col]
        sf = float(b.sf[k])
        assert abs(math.hypot(fx, fy) - sf) < 0.006, k
        if sf >= 0.05:
            err = (math.atan2(fy, fx) - float(b.theta[k]) + math.pi) % (2 * math.pi) - math.pi
            assert abs(err) < 0.1, k
        checked += 1
    assert checked >= 20


def test_simple_cells_rectify_and_complex_cells_are_phase_invariant():
    # The parameters depend only on (seed, channel count), so an all-simple and an all-complex
    # block share every filter: channel k is the same Gabor as a simple and as a complex cell.
    n, size = 48, 31
    simple = block(simple_channels=n, complex_channels=0, kernel_size=size)
    complex_ = block(simple_channels=0, complex_channels=n, kernel_size=size)
    assert torch.equal(simple.weight_q0, complex_.weight_q0)
    out = simple(torch.randn(4, 1, 32, 32))
    assert (out >= 0).all() and (out > 0).any()
    phases = torch.arange(8) * (2 * math.pi / 8)
    c = size // 2
    simple_var, complex_var = [], []
    for k in range(n):
        sf, theta = float(simple.sf[k]), float(simple.theta[k])
        stimuli = torch.stack([grating(size, sf, theta, float(p)) for p in phases])[:, None]
        # At the centre the kernel overlaps the whole grating: the response is <kernel, grating>.
        rs = simple(stimuli)[:, k, c, c]
        rc = complex_(stimuli)[:, k, c, c]
        assert (rs >= 0).all() and (rc >= 0).all()
        simple_var.append(float((rs.max() - rs.min()) / rs.mean()))
        complex_var.append(float((rc.max() - rc.min()) / rc.mean()))
        envelope_fits = 3 * max(float(simple.sigma_x[k]), float(simple.sigma_y[k])) <= c
        if envelope_fits and float(simple.nx[k]) >= 0.3:
            assert complex_var[-1] < 0.1, k  # energy: nearly constant across the grating's phase
            assert simple_var[-1] > 1.0, k   # half-wave rectified: from ~0 to its peak
    assert np.median(complex_var) < 0.25 < 1.0 < np.median(simple_var)


def test_noise_is_poisson_like():
    b = block(noise=True)
    a = torch.linspace(10, 80, 15).repeat(4000, 1)
    torch.manual_seed(0)
    y = b.add_noise(a)
    mean, var = y.mean(0), y.var(0)
    expected_var = a[0] / b.noise_scale + b.noise_level / b.noise_scale ** 2
    torch.testing.assert_close(mean, a[0], rtol=0.03, atol=0.2)
    ratio = var / expected_var
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio  # variance proportional to the mean
    assert np.corrcoef(mean.numpy(), var.numpy())[0, 1] > 0.95


def test_noise_active_in_train_and_eval_and_seeded():
    b = block(noise=True, in_channels=3)
    x = 2 * torch.randn(2, 3, 32, 32)
    for mode in (b.train, b.eval):
        mode()
        assert not torch.equal(b(x), b(x))
    torch.manual_seed(5)
    first = b(x)
    torch.manual_seed(5)
    assert torch.equal(first, b(x))
    assert (first >= 0).all()
    # the noise's mean follows the noise-free response
    clean = b.gabor_responses(x)
    noisy = torch.stack([b(x) for _ in range(50)]).mean(0)
    assert np.corrcoef(clean.flatten().numpy(), noisy.flatten().numpy())[0, 1] > 0.9


def test_without_noise_the_block_is_deterministic():
    b = block(in_channels=3)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(b(x), b(x))
    b.train()
    assert torch.equal(b(x), b.eval()(x))
    noisy = block(in_channels=3, noise=True).set_noise(False)
    assert torch.equal(noisy(x), b(x))


def test_v1_and_uniform_parameters_differ_and_seed_reproduces():
    kw = dict(simple_channels=256, complex_channels=256)
    v1, v1_again, uni = block(**kw), block(**kw), block(parameters="uniform", **kw)
    for name, buf in v1.state_dict().items():
        assert torch.equal(buf, v1_again.state_dict()[name]), name
    assert not torch.equal(block(seed=1, **kw).weight_q0, v1.weight_q0)
    log_sf_v1, log_sf_uni = np.log2(v1.sf_cpd.numpy()), np.log2(uni.sf_cpd.numpy())
    # same support (0.5 .. 5.6 cycles/degree at the defaults), different spreads
    for s in (v1.sf_cpd, uni.sf_cpd):
        assert s.min() >= 0.5 - 1e-6 and s.max() <= 5.6 + 1e-5
    assert log_sf_uni.std() > log_sf_v1.std() + 0.15
    assert np.log10(uni.nx.numpy()).std() > np.log10(v1.nx.numpy()).std() + 0.05
    # V1: spatial frequency and nx correlated (copula), uniform: not
    assert np.corrcoef(log_sf_v1, np.log10(v1.nx.numpy()))[0, 1] > 0.4
    assert abs(np.corrcoef(log_sf_uni, np.log10(uni.nx.numpy()))[0, 1]) < 0.15
    # V1 orientations favour the cardinal axes (De Valois et al. 1982); cycles/pixel from degrees
    ori = np.rad2deg(v1.theta.numpy())
    near = lambda c: np.mean(np.abs((ori - c + 90) % 180 - 90) < 22.5)
    assert near(90) > near(45)
    torch.testing.assert_close(v1.sf, v1.sf_cpd / (32 / 2.0))


def test_sampler_rejects_a_support_beyond_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        sample_gabor_parameters(4, 0, "v1", pixels_per_degree=0.8)
    with pytest.raises(ValueError, match="parameters"):
        sample_gabor_parameters(4, 0, "gabor")


def test_option_defaults_keys_and_taps():
    assert set(VONE_DEFAULTS) == VONE_OPTIONS
    assert "vone" in CLASSIFIER_OPTIONS
    for arch, opts in ARCHITECTURE_OPTIONS.items():
        assert "vone" in opts
        assert taps_for(arch, {"architecture": arch}) == ARCHITECTURE_TAPS[arch]
        assert taps_for(arch, {"architecture": arch, "vone": None}) == ARCHITECTURE_TAPS[arch]
        assert taps_for(arch, {"architecture": arch, "vone": {}}) == ("vone", *ARCHITECTURE_TAPS[arch])
    assert vone_options(None) is None and vone_options(False) is None
    assert vone_options(True) == {**VONE_DEFAULTS, "image_size": 32}
    assert vone_options({"seed": 2}, input_size=64)["image_size"] == 64
    with pytest.raises(ValueError, match="vone.sigma"):
        vone_options({"sigma": 1})
    with pytest.raises(ValueError, match="kernel_size"):
        block(kernel_size=6)


def classifier(arch, vone, in_channels=3, **options):
    torch.manual_seed(0)
    return build_classifier(arch, 10, in_channels, [0.5] * in_channels, [0.25] * in_channels, vone=vone, **options)


@pytest.mark.parametrize("arch", ["resnet18", "cornet_z"])
def test_sgd_step_trains_only_bottleneck_and_backbone(arch):
    model = classifier(arch, {"simple_channels": 8, "complex_channels": 8, "bottleneck": 8}, width=4)
    assert isinstance(model.backbone, VOneFront)
    assert tuple(model.tap_names) == taps_for(arch, {"vone": {}})
    vone = model.backbone.vone
    filters = vone.weight_q0.clone()
    names = [n for n, _ in model.named_parameters()]
    assert names and all(n.startswith(("backbone.bottleneck.", "backbone.backbone.")) for n in names)
    assert any(n.startswith("backbone.bottleneck.") for n in names)
    assert not any(b.requires_grad for b in vone.buffers())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    model.train()
    logits, feats = model.forward_taps(x, ("vone", model.tap_names[1]))
    assert feats["vone"].shape == (8, 16, 32, 32) and model.tap_names[1] in feats
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone.bottleneck.weight.grad.abs().sum() > 0
    before = model.backbone.bottleneck.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.backbone.bottleneck.weight)
    assert torch.equal(filters, vone.weight_q0)


def test_normalisation_and_resize_precede_the_block():
    model = classifier("cornet_z", {"noise": False}, in_channels=1, width=4, input_size=40).eval()
    x = torch.rand(2, 1, 32, 32)
    _, feats = model.forward_taps(x, ("vone",))
    expected = model.backbone.vone((model.resize(x) - model.mean) / model.std)
    torch.testing.assert_close(feats["vone"], expected)
    assert model.backbone.vone.image_size == 40


@pytest.mark.parametrize("vone_cfg", [{"noise": False, "parameters": "uniform", "seed": 3, "kernel_size": 5},
                                      {"noise": True}])
def test_save_and_load_round_trip(tmp_path, vone_cfg):
    from neurobias.models.io import load_classifier, save_classifier
    cfg = {"architecture": "resnet18", "width": 4, "vone": vone_cfg, "diagnostic_layers": ["vone"]}
    model = classifier("resnet18", vone_cfg, width=4).eval()
    save_classifier(model, cfg, 10, 3, tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "backbone.vone.weight_q0" in blob["state_dict"]  # the checkpoint carries the filters
    loaded = load_classifier(tmp_path / "model.pt")
    assert loaded.backbone.vone.noise == vone_cfg["noise"]
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        b = loaded(x)
    assert torch.equal(a, b)
