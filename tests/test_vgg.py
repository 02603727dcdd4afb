"""Tests for neurobias.models.vgg: configurations D and E, the batch_norm and head_init options."""

import pytest
import torch
from torch import nn

from neurobias.layer_names import ARCHITECTURE_TAPS
from neurobias.models import build_classifier
from neurobias.models.vgg import vgg16
from test_models import classifier


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


def test_vgg19_is_configuration_e_and_stops_at_the_requested_tap():
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=8).eval()
    assert model.tap_names == ARCHITECTURE_TAPS["vgg19"]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 16
    x = torch.rand(2, 1, 64, 64)
    logits, full = model.forward_taps(x, ("conv3_1",))
    none, early = model.forward_taps(x, ("conv3_1",), features_only=True)
    assert none is None and logits.shape == (2, 10)
    assert early["conv3_1"].shape == (2, 32, 16, 16)  # 4 w channels after two poolings
    assert torch.equal(early["conv3_1"], full["conv3_1"])
