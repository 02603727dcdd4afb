"""Tests for neurobias.models.cornet: CORnet-Z against the published definition."""

import numpy as np
import torch
from torch import nn

from neurobias.models.cornet import cornet_z


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
