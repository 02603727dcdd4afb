"""Random numbers drawn inside a network: dropout's masks, a VOneBlock's noise, a Gaussian
readout's sampled positions.

Every such draw goes through this module so that the stacked engine (:mod:`neurobias.stacked`)
can give each run of a stack exactly the numbers its own job draws. ``vmap`` cannot draw from a
run's own random state, so the engine

1. records which draws one step makes (:func:`recording`: kind, shape, memory layout, dtype, on a
   plain forward pass of a copy of the network),
2. replays them for each run from that run's own random state, outside vmap (:func:`replay`), and
3. hands them to the stacked step, where every draw takes its run's next tensor
   (:func:`supplied`), checked against the recorded shape.

Outside the stacked engine a draw is the torch call it stands for, from torch's global generator:
:func:`dropout_mask` is what ATen's CPU dropout multiplies by (``empty_like(x).bernoulli_(1 - p)``
divided by ``1 - p``; on a GPU F.dropout would use a fused kernel with other draws), and
:func:`normal_like` is ``torch.randn_like``. tests/test_random_draws.py checks both against the
calls they replace.

Extension point: a layer that draws random numbers calls one of :func:`dropout_mask`,
:func:`normal_like` or :func:`normal`; a new kind of draw is a new entry of :data:`_MAKERS`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Draw:
    """One random tensor a forward pass draws: what :func:`replay` needs to draw it again."""
    kind: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    p: float = 0.0  # the dropout probability of a "dropout_mask"


def _dropout_mask(d: Draw) -> torch.Tensor:
    keep = 1.0 - d.p
    return torch.empty_strided(d.shape, d.stride, dtype=d.dtype, device=d.device).bernoulli_(keep).div_(keep)


def _normal(d: Draw) -> torch.Tensor:
    return torch.empty_strided(d.shape, d.stride, dtype=d.dtype, device=d.device).normal_()


_MAKERS = {"dropout_mask": _dropout_mask, "normal": _normal}


class _Recorder:
    def __init__(self):
        self.draws: list[Draw] = []
        self.tensors: list[torch.Tensor] = []

    def __call__(self, d: Draw) -> torch.Tensor:
        self.draws.append(d)
        self.tensors.append(_MAKERS[d.kind](d))
        return self.tensors[-1]


class _Supplier:
    def __init__(self, tensors):
        self.tensors, self.next = list(tensors), 0

    def __call__(self, d: Draw) -> torch.Tensor:
        if self.next >= len(self.tensors):
            raise RuntimeError(f"random draws: the step drew more than the {len(self.tensors)} recorded "
                               f"(a {d.kind} of shape {d.shape}); its draws must not depend on the data")
        t = self.tensors[self.next]
        if tuple(t.shape) != d.shape:
            raise RuntimeError(f"random draws: draw {self.next} ({d.kind}) has shape {d.shape}, "
                               f"{tuple(t.shape)} was recorded")
        self.next += 1
        return t


_source: list = []  # the innermost recording() / supplied() context, if any


def _draw(d: Draw) -> torch.Tensor:
    return _source[-1](d) if _source else _MAKERS[d.kind](d)


@contextlib.contextmanager
def _using(source):
    _source.append(source)
    try:
        yield source
    finally:
        _source.pop()


def recording():
    """``with recording() as r: ...``: draws as usual, and lists them in ``r.draws`` (what was
    drawn) and ``r.tensors`` (the numbers)."""
    return _using(_Recorder())


@contextlib.contextmanager
def supplied(tensors):
    """Inside, the draws return ``tensors`` in order (each of the recorded shape); all must be used."""
    with _using(_Supplier(tensors)) as source:
        yield
    if source.next != len(source.tensors):
        raise RuntimeError(f"random draws: the step drew {source.next} of the {len(source.tensors)} recorded")


def replay(draws: list[Draw]) -> list[torch.Tensor]:
    """The tensors ``draws`` give from the current global random state (which they advance), as
    the forward pass that made them would have drawn them from it."""
    return [_MAKERS[d.kind](d) for d in draws]


def _draw_like(kind: str, x: torch.Tensor, p: float = 0.0) -> torch.Tensor:
    # inside the stacked step x is one run's slice of a vmapped tensor, which has no strides; a
    # supplied draw needs only the shape
    supplying = bool(_source) and isinstance(_source[-1], _Supplier)
    # empty_like's layout, as the calls these stand for: x's strides where x is dense, else contiguous
    stride = () if supplying else torch.empty_like(x).stride()
    return _draw(Draw(kind, tuple(x.shape), tuple(stride), x.dtype, x.device, p))


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's multiplier for ``x``: 0 with probability ``p``, else ``1 / (1 - p)``."""
    return _draw_like("dropout_mask", x, float(p))


def normal_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers of ``x``'s shape, layout and dtype (``torch.randn_like``)."""
    return _draw_like("normal", x)


def normal(shape, *, device, dtype, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal numbers (``torch.randn(shape)``); a draw from a ``generator`` of its own is
    made directly (the stacked engine refuses such a network: it replays the global state only)."""
    if generator is not None:
        if _source:
            raise RuntimeError("random draws: a layer draws from a generator of its own, which the stacked engine "
                               "cannot replay per run")
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    shape = tuple(int(s) for s in shape)
    return _draw(Draw("normal", shape, _contiguous_strides(shape), dtype, torch.device(device)))


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn through :func:`dropout_mask` (on a CPU the same numbers
    as ``nn.Dropout``), so a stacked network can give each run its own job's masks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        mask = dropout_mask(x, self.p)
        return x.mul_(mask) if self.inplace else x * mask
