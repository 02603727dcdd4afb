"""Robustness evaluations. Each returns records that the jobs turn into tidy rows;
:data:`EVALUATIONS` maps the config's ``evaluations`` names to them (the extension point for
corruptions and image manipulations).

The names here are resolved lazily (PEP 562): importing a submodule such as
:mod:`neurobias.robustness.label_noise` (which :mod:`neurobias.train` does) must not import
foolbox/eagerpy, which only :mod:`.adversarial` and :mod:`.pgd` need.
"""

from __future__ import annotations

import importlib

__all__ = ["EVALUATIONS", "gaussian_noise_accuracy", "minimal_perturbations"]

# name -> (submodule, attribute) of the evaluations; EVALUATIONS is built from it on first use.
_EVALUATIONS = {"gaussian_noise": (".noise", "gaussian_noise_accuracy"),
                "adversarial": (".adversarial", "minimal_perturbations")}
_LAZY = {attr: module for module, attr in _EVALUATIONS.values()}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name == "EVALUATIONS":
        value = {key: getattr(importlib.import_module(module, __name__), attr)
                 for key, (module, attr) in _EVALUATIONS.items()}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # cached: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
