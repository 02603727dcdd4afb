"""Splitting a backbone at a tap: the shared core before it, the rest after it.

Safarani et al. 2021's oracle freezes the network up to a layer and retrains everything after it
(:mod:`neurobias.regularisers.oracle`). A backbone supports that by mixing in :class:`CoreSplit`
and defining ``_block(tap)`` (the module that produces the tap) and ``_initialise(module)`` (its
construction-time initialisation of one module).
"""

from __future__ import annotations

import torch
from torch import nn

from ..seeding import forked_global_rng


class CoreSplit:
    tap_names: tuple[str, ...]

    def _block(self, tap: str) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def _initialise(module: nn.Module) -> None:
        raise NotImplementedError

    def core_modules(self, layer: str) -> list[nn.Module]:
        """The blocks up to and including tap ``layer`` (the shared core)."""
        if layer not in self.tap_names:
            raise ValueError(f"{type(self).__name__}: unknown layer {layer!r}; taps are {list(self.tap_names)}")
        return [self._block(n) for n in self.tap_names[: self.tap_names.index(layer) + 1]]

    def reset_after(self, layer: str, generator: torch.Generator | None = None) -> None:
        """Re-initialise every module after tap ``layer`` (classifier included) as at construction,
        with a seed drawn from ``generator``; BatchNorm statistics are reset too."""
        core = {id(m) for block in self.core_modules(layer) for m in block.modules()}
        seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
        with forked_global_rng(next(self.parameters()).device, seed):
            for m in self.modules():
                if id(m) not in core:
                    self._initialise(m)
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.reset_running_stats()
