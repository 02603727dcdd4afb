"""Torch's global random state, forked (and seeded) around code that must not disturb it.

``torch.manual_seed`` seeds the CPU's generator and every CUDA device's, while
``torch.random.fork_rng`` restores only the CUDA devices it is given. Seeding inside a fork of
the CPU alone (``fork_rng(devices=[])``) therefore reseeds the caller's GPU generators, and
forking every GPU initialises CUDA on each of them. :func:`forked_global_rng` forks and seeds the
same generators: the CPU's and, for a CUDA device, that device's. Inside, the numbers drawn on
``device`` are those after ``torch.manual_seed(seed)``; on leaving, the caller's state of every
device is what it was on entering.
"""

from __future__ import annotations

import contextlib

import torch


def cuda_indices(device) -> list[int]:
    """The CUDA device whose generator code on ``device`` draws from: ``[index]``, or ``[]`` off CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextlib.contextmanager
def forked_global_rng(device="cpu", seed: int | None = None, enabled: bool = True):
    """Inside, torch's global generators of the CPU and of ``device`` (a CUDA device) are a fork
    of the caller's, seeded with ``seed`` when given; ``enabled=False`` does neither."""
    devices = cuda_indices(device)
    with torch.random.fork_rng(devices=devices, enabled=enabled):
        if enabled and seed is not None:
            torch.random.default_generator.manual_seed(int(seed))
            for index in devices:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(int(seed))
        yield
