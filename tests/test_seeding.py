"""neurobias.seeding: seeding inside a fork draws torch.manual_seed's numbers on the device and
leaves the caller's random state of the CPU and of the GPU as it was (the oracle's reinitialisation
that relies on it: tests/test_core_split.py)."""

import pytest
import torch

from neurobias.seeding import forked_global_rng

ON_A_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _manual_seed_draws(seed: int, device: str) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(5, device=device)


def test_seeded_draws_are_manual_seed_s_and_the_caller_s_cpu_state_is_kept():
    expected = _manual_seed_draws(11, "cpu")
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with forked_global_rng("cpu", 11):
        got = torch.rand(5)
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), before)


def test_without_a_seed_the_fork_draws_the_caller_s_numbers_and_gives_them_back():
    torch.manual_seed(4)
    expected = torch.rand(5)
    torch.manual_seed(4)
    with forked_global_rng("cpu"):
        got = torch.rand(5)
    assert torch.equal(got, expected)
    assert torch.equal(torch.rand(5), expected)  # the caller's stream did not advance


def test_disabled_it_neither_seeds_nor_restores():
    torch.manual_seed(5)
    expected = torch.rand(10)
    torch.manual_seed(5)
    with forked_global_rng("cpu", 99, enabled=False):
        first = torch.rand(5)
    assert torch.equal(torch.cat([first, torch.rand(5)]), expected)


@ON_A_GPU
def test_on_a_gpu_the_device_s_draws_are_manual_seed_s_and_its_state_is_kept():
    expected = _manual_seed_draws(11, "cuda")
    torch.manual_seed(3)
    cpu_before, gpu_before = torch.get_rng_state(), torch.cuda.get_rng_state()
    with forked_global_rng("cuda", 11):
        got = torch.rand(5, device="cuda")
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), cpu_before)
    assert torch.equal(torch.cuda.get_rng_state(), gpu_before)  # a CPU-only fork reseeded it
