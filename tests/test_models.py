"""The backbones together (neurobias.models): output and tap shapes, tap names vs layer_names,
trainability, and predictions in the scoring layout. One module's own tests are in its file:
tests/test_classifier.py, test_cornet.py, test_vgg.py, test_core_split.py, test_models_io.py,
test_layer_names.py, test_vone.py, test_random_draws.py."""

import inspect

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurobias.layer_names import (ARCHITECTURE_OPTIONS, ARCHITECTURE_TAPS, CLASSIFIER_OPTIONS,
                                   DEFAULT_DIAGNOSTIC_TAPS)
from neurobias.models import ARCHITECTURES, build_classifier

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
