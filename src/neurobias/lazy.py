"""Names of a package imported on first use (PEP 562), so that importing the package (to read its
declarations, :mod:`neurobias.registry`) loads none of the torch code behind them."""

from __future__ import annotations

import importlib
import sys


def lazy_attributes(package: str, names: dict[str, str]):
    """A module ``__getattr__`` for ``package`` that imports ``name`` from the submodule
    ``names[name]`` (relative, e.g. ``".base"``) when it is first asked for, and keeps it."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups do not come back here
        return value
    return __getattr__
