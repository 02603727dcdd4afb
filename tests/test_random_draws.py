"""Random numbers drawn inside a network (neurobias.models.random_draws): outside the stacked
engine each draw is the torch call it stands for, number for number; recorded draws replay to the
same numbers from the same random state; supplied draws are checked against what the step asks."""

import pytest
import torch
from torch.nn import functional as F

from neurobias.models import random_draws
from neurobias.models.random_draws import Dropout, normal, normal_like


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_is_torch_s_cpu_dropout_number_for_number_and_in_its_gradient(dtype):
    x = torch.randn(64, 37, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    expected = F.dropout(x, 0.5, training=True)
    expected.sum().backward()
    expected_grad, x.grad = x.grad.clone(), None
    expected_state = torch.get_rng_state()
    torch.manual_seed(3)
    got = Dropout(0.5).train()(x)
    got.sum().backward()
    assert torch.equal(expected, got) and torch.equal(expected_grad, x.grad)
    assert torch.equal(expected_state, torch.get_rng_state())  # the same numbers consumed
    assert 0 < int((got == 0).sum()) < got.numel()
    assert torch.equal(Dropout(0.5).eval()(x), x)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_normal_like_is_randn_like_in_either_layout(layout):
    r = torch.randn(8, 5, 6, 7).contiguous(memory_format=layout)
    torch.manual_seed(4)
    expected = torch.randn_like(r)
    torch.manual_seed(4)
    got = normal_like(r)
    assert torch.equal(expected, got) and got.stride() == expected.stride()
    torch.manual_seed(5)
    expected = torch.randn((16, 20, 2))
    torch.manual_seed(5)
    assert torch.equal(expected, normal((16, 20, 2), device="cpu", dtype=torch.float32))


def test_draws_for_inputs_that_are_not_dense_take_torch_s_layout_too():
    x = torch.randn(4, 6, 8, 8)[:, ::2]  # a slice: empty_like lays it out contiguously
    torch.manual_seed(6)
    expected = torch.randn_like(x)
    torch.manual_seed(6)
    assert torch.equal(normal_like(x), expected)
    wide = torch.randn(1, 10).expand(4, 10)  # an expanded tensor: one element, many places
    torch.manual_seed(6)
    expected = F.dropout(wide, 0.5, training=True)
    torch.manual_seed(6)
    assert torch.equal(Dropout(0.5).train()(wide), expected)


def test_recorded_draws_replay_to_the_same_numbers_from_the_same_state():
    """The stacked engine records one step's draws and replays them for each run: in a
    channels_last tensor, randn_like's numbers land by memory order, and so do the replayed ones."""
    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(7)
    with random_draws.recording() as recorder:
        first, second = normal_like(x), Dropout(0.25).train()(torch.ones(4, 10))
    assert [d.kind for d in recorder.draws] == ["normal", "dropout_mask"]
    torch.manual_seed(7)
    replayed = random_draws.replay(recorder.draws)
    assert torch.equal(replayed[0], first) and torch.equal(replayed[1], second)
    assert torch.equal(replayed[0], recorder.tensors[0])


def test_supplied_draws_are_used_in_order_and_checked_against_the_step():
    mask = torch.full((4, 10), 2.0)
    with random_draws.supplied([mask]):
        assert torch.equal(Dropout(0.5).train()(torch.ones(4, 10)), mask)
    with pytest.raises(RuntimeError, match=r"has shape \(4, 11\), \(4, 10\) was recorded"):
        with random_draws.supplied([mask]):
            Dropout(0.5).train()(torch.ones(4, 11))
    with pytest.raises(RuntimeError, match="drew more than the 1 recorded"):
        with random_draws.supplied([mask]):
            Dropout(0.5).train()(torch.ones(4, 10))
            Dropout(0.5).train()(torch.ones(4, 10))
    with pytest.raises(RuntimeError, match="drew 0 of the 1 recorded"):
        with random_draws.supplied([mask]):
            pass


def test_a_draw_from_a_generator_of_its_own_is_made_directly_but_cannot_be_replayed():
    g = torch.Generator().manual_seed(1)
    expected = torch.randn((3, 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(normal((3, 2), device="cpu", dtype=torch.float32, generator=g), expected)
    with pytest.raises(RuntimeError, match="generator of its own"):
        with random_draws.recording():
            normal((3, 2), device="cpu", dtype=torch.float32, generator=g)
