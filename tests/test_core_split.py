"""Tests for neurobias.models.core_split: reset_after keeps the core, redraws the rest, seeded by its
generator and leaving the caller's random state alone."""

import copy

import torch

from neurobias.models import build_classifier
from test_seeding import ON_A_GPU


def test_reset_after_keeps_the_core_and_redraws_the_rest():
    model = build_classifier("vgg19", 10, 1, torch.zeros(1), torch.ones(1), width=4)
    before = copy.deepcopy(model.state_dict())
    model.backbone.reset_after("conv3_1", torch.Generator().manual_seed(1))
    after = model.state_dict()
    assert torch.equal(before["backbone.features.conv3_1.0.weight"], after["backbone.features.conv3_1.0.weight"])
    assert torch.equal(before["backbone.features.conv1_1.0.weight"], after["backbone.features.conv1_1.0.weight"])
    assert not torch.equal(before["backbone.features.conv3_2.0.weight"], after["backbone.features.conv3_2.0.weight"])
    assert not torch.equal(before["backbone.classifier.0.weight"], after["backbone.classifier.0.weight"])


@ON_A_GPU
def test_the_oracle_s_reinitialisation_on_a_gpu_keeps_the_caller_s_gpu_state():
    model = build_classifier("vgg11", 10, 1, [0.5], [0.25], width=8).cuda()
    torch.manual_seed(3)
    gpu_before = torch.cuda.get_rng_state()
    model.backbone.reset_after("conv3_1", torch.Generator().manual_seed(0))
    assert torch.equal(torch.cuda.get_rng_state(), gpu_before)


def test_the_oracle_s_reinitialisation_is_seeded_by_its_generator_and_keeps_the_caller_s_state():
    heads = []
    for caller_seed in (3, 4):
        torch.manual_seed(0)
        model = build_classifier("vgg11", 10, 1, [0.5], [0.25], width=8)
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        model.backbone.reset_after("conv3_1", torch.Generator().manual_seed(0))
        assert torch.equal(torch.get_rng_state(), before)
        heads.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*heads))  # the caller's state does not reach the weights
