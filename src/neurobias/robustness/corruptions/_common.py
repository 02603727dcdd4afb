"""Helpers that several corruption categories share: the compiled-kernel switch, random draws
from the chunk's generator, uint8 quantisation, the registry's uint8 adapter, scipy's Gaussian
weights and the per-device cache of constant tables. See the package docstring
(:mod:`neurobias.robustness.corruptions`) for the semantics they implement.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import torch

U16 = 65536  # resolution of the 16-bit uniforms (impulse noise, glass blur offsets, elastic fields)


# ----------------------------------------------------------------------------------------------
# CPU kernels


def _kernels(x: torch.Tensor) -> bool:
    """Whether to run a compiled CPU kernel for x: the package's ``CPU_KERNELS``, read at call
    time (tests and benchmarks set it on the package), and x on the CPU."""
    return sys.modules[__package__].CPU_KERNELS and x.device.type == "cpu"


def _cpu_kernels():
    """The kernels module, imported on first use (numba's import and the kernels' compilation
    or cache loading cost ~0.5 s: jobs that only read this package's tables don't pay it)."""
    from .. import cpu_kernels

    return cpu_kernels


# ----------------------------------------------------------------------------------------------
# random draws


def _child_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=g))


def _fill(t: torch.Tensor, g: torch.Generator, fill: Callable[[torch.Tensor, torch.Generator], None]) -> torch.Tensor:
    """Fill ``t`` in place with random values: on the CPU from g itself, on a GPU from a device
    generator seeded from g."""
    if t.device.type != "cpu":
        fill(t, torch.Generator(device=t.device).manual_seed(_child_seed(g)))
    else:
        fill(t, g)
    return t


def _randn(shape, g, device, dtype=torch.float32) -> torch.Tensor:
    return _fill(torch.empty(shape, dtype=dtype, device=device), g, lambda t, gg: t.normal_(generator=gg))


def _rand(shape, g, device, dtype=torch.float32) -> torch.Tensor:
    return _fill(torch.empty(shape, dtype=dtype, device=device), g, lambda t, gg: t.uniform_(generator=gg))


def _random_int16(n: int, g, device) -> torch.Tensor:
    """n independent uniform int16 values (all 65536 equally likely), four per 64-bit draw.
    (``random_()`` without bounds gives only 63 random bits for int64: the full range is asked.)"""
    words = _fill(torch.empty((n + 3) // 4, dtype=torch.int64, device=device), g,
                  lambda t, gg: t.random_(-2 ** 63, 2 ** 63 - 1, generator=gg))
    return words.view(torch.int16)[:n]


# ----------------------------------------------------------------------------------------------
# quantisation


def _uint8_of(x: torch.Tensor) -> torch.Tensor:
    """The uint8 images k behind float images x = k / 255."""
    return torch.round(x * 255).to(torch.uint8)


def _finalise(y: torch.Tensor) -> torch.Tensor:
    """A corruption's result as uint8: as is if uint8, else np.uint8(np.clip(y, 0, 1) * 255)
    (truncation)."""
    if y.dtype == torch.uint8:
        return y
    return y.clamp_(0, 1).mul_(255).to(torch.int32).to(torch.uint8)  # float -> int truncates


def _uint8_native(core: Callable, name: str) -> Callable:
    """The registry's float-in function for a corruption implemented on uint8 images: ``core(x8,
    severity, generator)``; ``corrupt`` calls ``core`` directly (``.uint8_impl``), skipping the
    conversions. It carries ``core``'s module, so it is found (and pickled) where ``core`` lives."""

    def corruption(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
        return core(_uint8_of(x), severity, generator)

    corruption.__name__ = corruption.__qualname__ = name
    corruption.__module__ = core.__module__
    corruption.__doc__ = core.__doc__
    corruption.uint8_impl = core
    return corruption


# ----------------------------------------------------------------------------------------------
# small helpers


# Note on speed (CPU): in this package, selections are table look-ups (index_select) or bitwise
# operations rather than torch.where / masked_fill, which are several times slower on the CPU
# for these sizes; large fresh allocations are avoided where easy (page faults are expensive).


def _scipy_gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights (``_gaussian_kernel1d`` with order 0)."""
    radius = int(truncate * float(sigma) + 0.5)
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / sigma2 * x ** 2)
    return phi / phi.sum()


_DEVICE_CACHE: dict = {}


def _on_device(key, device: torch.device, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A constant tensor (built on the CPU by ``make``, cached there) on ``device`` (cached)."""
    if device.type == "cpu":
        return make()
    k = (key, str(device))
    if k not in _DEVICE_CACHE:
        _DEVICE_CACHE[k] = make().to(device)
    return _DEVICE_CACHE[k]
