"""Backbones: output and tap shapes, tap names vs layer_names, the input_size option, trainability,
and parameter counts against the published definitions."""

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurobias.layer_names import (ARCHITECTURE_OPTIONS, ARCHITECTURE_TAPS, CLASSIFIER_OPTIONS,
                                   DEFAULT_DIAGNOSTIC_TAPS)
from neurobias.models import ARCHITECTURES, Classifier, build_classifier
from neurobias.models.cornet import cornet_z
from neurobias.models.vgg import vgg16

NEW = ("cornet_z", "vgg16")


def classifier(arch, num_classes=10, in_channels=3, **options):
    torch.manual_seed(0)
    return build_classifier(arch, num_classes, in_channels, [0.5] * in_channels, [0.25] * in_channels, **options)


def images(n=4, channels=3, size=32, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def cornet_tap_shapes(n, w, size=32):
    # V1: 7x7 stride-2 conv (padding 3) then every block's 3/2/1 max-pool: out = floor((in - 1) / 2) + 1
    half = lambda s: (s - 1) // 2 + 1
    v1 = half(half(size))
    v2, v4 = half(v1), half(half(v1))
    it = half(v4)
    return {"V1": (n, w, v1, v1), "V2": (n, 2 * w, v2, v2), "V4": (n, 4 * w, v4, v4), "IT": (n, 8 * w, it, it)}


def vgg_tap_shapes(n, w, size=32):
    out, s = {}, size
    for stage, (mult, convs) in enumerate([(1, 2), (2, 2), (4, 3), (8, 3), (8, 3)], start=1):
        for i in range(1, convs + 1):
            out[f"conv{stage}_{i}"] = (n, mult * w, s, s)
        s //= 2
        out[f"pool{stage}"] = (n, mult * w, s, s)
    return out


EXPECTED_TAPS = {"cornet_z": cornet_tap_shapes, "vgg16": vgg_tap_shapes}


def test_expected_shapes_match_the_worked_examples():
    # The shapes the definitions imply at 32x32, written out.
    assert cornet_tap_shapes(4, 64) == {"V1": (4, 64, 8, 8), "V2": (4, 128, 4, 4), "V4": (4, 256, 2, 2),
                                        "IT": (4, 512, 1, 1)}
    v = vgg_tap_shapes(4, 64)
    assert v["conv1_1"] == (4, 64, 32, 32) and v["pool1"] == (4, 64, 16, 16)
    assert v["conv2_1"] == (4, 128, 16, 16) and v["conv3_3"] == (4, 256, 8, 8)
    assert v["conv4_1"] == (4, 512, 4, 4) and v["conv5_3"] == (4, 512, 2, 2) and v["pool5"] == (4, 512, 1, 1)
    # At 227x227 (Federer et al.'s upsampled CIFAR)
    assert cornet_tap_shapes(1, 64, 227)["V1"] == (1, 64, 57, 57)
    assert cornet_tap_shapes(1, 64, 227)["IT"] == (1, 512, 8, 8)
    assert vgg_tap_shapes(1, 64, 227)["pool5"] == (1, 512, 7, 7)


@pytest.mark.parametrize("arch", NEW)
@pytest.mark.parametrize("width", [64, 8])
@pytest.mark.parametrize("channels,classes", [(3, 10), (3, 100), (1, 10), (1, 100)])
def test_output_and_tap_shapes(arch, width, channels, classes):
    model = classifier(arch, classes, channels, width=width).eval()
    with torch.no_grad():
        logits, feats = model.forward_taps(images(4, channels), model.tap_names)
    assert logits.shape == (4, classes)
    assert torch.isfinite(logits).all()
    expected = EXPECTED_TAPS[arch](4, width)
    assert list(feats) == list(model.tap_names) == list(expected)
    assert {k: tuple(v.shape) for k, v in feats.items()} == expected
    assert torch.equal(model(images(4, channels)), logits)


@pytest.mark.parametrize("arch", NEW)
def test_larger_inputs(arch):
    model = classifier(arch, 10, 3, width=4, input_size=227).eval()
    with torch.no_grad():
        logits, feats = model.forward_taps(images(2), model.tap_names)
    assert logits.shape == (2, 10)
    assert {k: tuple(v.shape) for k, v in feats.items()} == EXPECTED_TAPS[arch](2, 4, 227)


def test_taps_only_returns_requested():
    model = classifier("vgg16", width=4).eval()
    _, feats = model.forward_taps(images(), ("conv2_1",))
    assert list(feats) == ["conv2_1"]
    _, feats = model.forward_taps(images())
    assert feats == {}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_tap_names_match_layer_names(arch):
    model = classifier(arch, width=4)
    assert tuple(model.tap_names) == ARCHITECTURE_TAPS[arch]
    assert tuple(model.backbone.tap_names) == ARCHITECTURE_TAPS[arch]


def test_layer_names_cover_registry_and_options():
    assert set(ARCHITECTURE_TAPS) == set(ARCHITECTURES) == set(ARCHITECTURE_OPTIONS) == set(DEFAULT_DIAGNOSTIC_TAPS)
    for arch, taps in DEFAULT_DIAGNOSTIC_TAPS.items():
        assert taps and set(taps) <= set(ARCHITECTURE_TAPS[arch]), arch
    for arch, ctor in ARCHITECTURES.items():
        params = list(inspect.signature(ctor).parameters)
        assert params[:2] == ["num_classes", "in_channels"], arch
        assert set(params[2:]) | CLASSIFIER_OPTIONS == ARCHITECTURE_OPTIONS[arch], arch
    assert "conv2_1" in ARCHITECTURE_TAPS["vgg16"]  # Federer et al.'s "third convolutional layer"
    assert [t for t in ARCHITECTURE_TAPS["vgg16"] if t.startswith("conv")][2] == "conv2_1"


def test_layer_names_does_not_import_torch():
    code = "import sys, neurobias.layer_names; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [72, 40])  # up- and downsampling of 48x48 images (VGG needs >= 32)
def test_input_size_equals_feeding_resized_images(arch, size):
    x = images(3, size=48)
    resized = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    with_resize = classifier(arch, width=4, input_size=size).eval()
    plain = classifier(arch, width=4).eval()
    plain.load_state_dict(with_resize.state_dict())
    with torch.no_grad():
        a_logits, a = with_resize.forward_taps(x, with_resize.tap_names)
        b_logits, b = plain.forward_taps(resized, plain.tap_names)
    torch.testing.assert_close(a_logits, b_logits)
    for t in with_resize.tap_names:
        torch.testing.assert_close(a[t], b[t])
        assert a[t].shape == b[t].shape


def test_input_size_none_is_the_old_behaviour():
    model = classifier("resnet18", width=4).eval()
    assert model.input_size is None
    x = images()
    with torch.no_grad():
        old = model.backbone.forward_taps((x - model.mean) / model.std, ("layer1",))
        new = model.forward_taps(x, ("layer1",))
    assert torch.equal(old[0], new[0]) and torch.equal(old[1]["layer1"], new[1]["layer1"])
    # input_size is not state: checkpoints from before the option load either way
    assert list(classifier("resnet18", width=4, input_size=40).state_dict()) == list(model.state_dict())
    # Classifier's old positional signature still works
    Classifier(model.backbone, [0.5] * 3, [0.25] * 3)


@pytest.mark.parametrize("bad", [0, -3, 32.0, "32", True])
def test_input_size_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="input_size"):
        classifier("cornet_z", width=4, input_size=bad)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError):
        classifier("cornet_z", batch_norm=True)
    with pytest.raises(ValueError, match="architecture"):
        classifier("alexnet")


@pytest.mark.parametrize("arch", ["vgg16"])
def test_vgg_batch_norm_option(arch):
    model = classifier(arch, width=4, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in classifier(arch, width=4).modules()) == 0


@pytest.mark.parametrize("arch", ["vgg11", "vgg16", "vgg19"])
def test_vgg_head_init_scales_the_linear_layers_by_their_fan_in(arch):
    """width_scaled: SD 0.01 sqrt(4096 / fan_in), torchvision's per-layer gain on a narrow head."""
    wide = classifier(arch, width=32, head_init="width_scaled")  # 256 features: 256 x 256 weights
    plain = classifier(arch, width=32)  # the same seed
    for scaled, default in zip(*(([m for m in net.modules() if isinstance(m, nn.Linear)]) for net in (wide, plain))):
        fan_in = scaled.in_features
        assert scaled.weight.std().item() == pytest.approx(0.01 * (4096 / fan_in) ** 0.5, rel=0.1)
        assert default.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert not scaled.bias.any()
    convs = [[m.weight for m in net.modules() if isinstance(m, nn.Conv2d)] for net in (wide, plain)]
    assert all(torch.equal(a, b) for a, b in zip(*convs))  # only the head differs
    with pytest.raises(ValueError, match="head_init"):
        classifier(arch, width=4, head_init="xavier")


def test_reset_after_reinitialises_the_head_with_its_own_head_init():
    """The oracle retrains everything after its frozen core: with the model's head_init, not the default."""
    model = classifier("vgg11", width=32, head_init="width_scaled")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m in linears:
            m.weight.zero_()
    model.backbone.reset_after("conv3_1", torch.Generator().manual_seed(0))  # as the oracle does
    for m in linears:
        assert m.weight.std().item() == pytest.approx(0.01 * (4096 / m.in_features) ** 0.5, rel=0.1)


def test_head_init_is_a_vgg_option_in_the_config():
    import copy
    import yaml
    from neurobias.config import ConfigError, validate_config
    from conftest import ROOT
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    bad = copy.deepcopy(config)
    bad["studies"]["safarani_demo"]["model"]["head_init"] = "xavier"
    with pytest.raises(ConfigError, match="safarani_demo.model.head_init"):
        validate_config(bad)
    bad = copy.deepcopy(config)
    bad["studies"]["demo"]["model"]["head_init"] = "width_scaled"
    with pytest.raises(ConfigError, match="head_init"):
        validate_config(bad)


def test_save_and_load_classifier_with_new_options(tmp_path):
    from neurobias.models.io import load_classifier, save_classifier
    for cfg in ({"architecture": "cornet_z", "width": 4, "input_size": 40, "diagnostic_layers": ["V1"]},
                {"architecture": "vgg16", "width": 4, "batch_norm": True, "diagnostic_layers": ["conv2_1"]}):
        model = build_classifier(cfg["architecture"], 10, 1, [0.4], [0.2],
                                 **{k: v for k, v in cfg.items() if k not in ("architecture", "diagnostic_layers")})
        model.eval()
        save_classifier(model, cfg, 10, 1, tmp_path / "model.pt")
        loaded = load_classifier(tmp_path / "model.pt")
        assert loaded.input_size == cfg.get("input_size")
        x = images(2, 1)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("arch,options", [("cornet_z", {}), ("vgg16", {}), ("vgg16", {"batch_norm": True})])
def test_sgd_step_trains(arch, options):
    model = classifier(arch, 10, 3, width=8, **options).double()
    x, y = images(16).double(), torch.arange(16) % 10
    # train mode: every parameter gets a finite, non-zero-everywhere gradient
    model.train()
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    # eval mode (no dropout noise, fixed BN statistics): one small step lowers the loss on the batch
    model.zero_grad()
    model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = F.cross_entropy(model(x), y)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after < before


def test_cornet_z_parameter_count_matches_published():
    convs = [3 * 64 * 7 * 7 + 64, 64 * 128 * 3 * 3 + 128, 128 * 256 * 3 * 3 + 256, 256 * 512 * 3 * 3 + 512]
    fc = 512 * 1000 + 1000
    model = cornet_z(1000, width=64, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == sum(convs) + fc == 2_071_656
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in layers] == [
        (3, 64, (7, 7), (2, 2), (3, 3)), (64, 128, (3, 3), (1, 1), (1, 1)),
        (128, 256, (3, 3), (1, 1), (1, 1)), (256, 512, (3, 3), (1, 1), (1, 1))]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 and all((p.kernel_size, p.stride, p.padding) == (3, 2, 1) for p in pools)
    # published init: Xavier-uniform weights, zero biases
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0
            bound = np.sqrt(6.0 / (nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
                                   + nn.init._calculate_fan_in_and_fan_out(m.weight)[1]))
            assert m.weight.abs().max() <= bound


def test_cornet_z_width_scales_channels():
    model = cornet_z(10, width=16, in_channels=1)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [16, 32, 64, 128]
    assert model.decoder.linear.in_features == 128


def test_vgg16_configuration_d():
    model = vgg16(1000, width=64, in_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    outs = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [c.out_channels for c in convs] == outs
    assert [c.in_channels for c in convs] == [3] + outs[:-1]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all((p.kernel_size, p.stride) == (2, 2) for p in pools)
    # conv parameters of the published VGG-16 (torchvision's vgg16().features has 14,714,688)
    assert sum(p.numel() for c in convs for p in c.parameters()) == 14_714_688
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 1000)]
    narrow = vgg16(10, width=16, in_channels=1)
    assert [c.out_channels for c in narrow.modules() if isinstance(c, nn.Conv2d)] == [o // 4 for o in outs]


@pytest.mark.parametrize("arch", ["resnet18", "cornet_z", "vgg11"])
def test_evaluation_in_channels_last_gives_the_same_predictions(arch):
    """predict() and the evaluations feed channels_last batches (faster on the CPU); the logits
    stay within float rounding of the plain NCHW forward pass, in both model layouts."""
    from neurobias.models import inference_layout, to_inference_layout
    from neurobias.train import predict
    model = classifier(arch, width=8).eval()
    x = (torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    with torch.no_grad():
        plain = model(x.float() / 255.0)
    assert inference_layout(x.float()).is_contiguous(memory_format=torch.channels_last)
    fast = predict(model, x, 32, "cpu")
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    (moved,) = to_inference_layout([model])
    conv = next(m for m in moved.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not moved.training
    torch.testing.assert_close(predict(moved, x, 64, "cpu"), plain, rtol=1e-4, atol=1e-5)
    assert torch.equal(predict(moved, x, 64, "cpu").argmax(1), plain.argmax(1))
