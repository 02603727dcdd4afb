"""Datasets, all converted to one prepared tensor format (:mod:`neurobias.data.prepared`).

The dataset sources (``datasets.<name>.source``) are declared below (:mod:`neurobias.registry`),
each with the schema of its config entry and a builder ``(params) -> (splits, classes)`` where
splits is ``{split: (images uint8 [N,C,H,W], labels int64 [N])}``; the result may also carry
``superclass_of_class`` / ``superclasses`` attributes. Downloaded sources get the verified
archive's path as ``params["archive"]``. ``params`` is a validated config entry: the schema's
defaults are filled in (:func:`neurobias.config.validate_config`). A plugin declares a source the
same way. This module imports neither torch nor numpy until one of its functions is asked for.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..registry import DatasetSourceSpec, declare

_GREY = {"type": "boolean", "default": False,
         "description": "ITU-R 601 luma, one channel (Li 2019 Fig. 4B: grey CIFAR-100; Safarani 2021: grey Tiny ImageNet)"}

declare(DatasetSourceSpec, name="synthetic", builder="neurobias.data.synthetic:build",
        doc="the embedded synthetic shape task (no download)",
        schema={"required": ["seed", "n_train", "n_val", "n_test"], "properties": {
            "seed": {"$ref": "#/$defs/seed"},
            "n_train": {"type": "integer", "minimum": 10},
            "n_val": {"type": "integer", "minimum": 10},
            "n_test": {"type": "integer", "minimum": 10},
            "image_size": {"type": "integer", "minimum": 16, "maximum": 128, "default": 32},
            "shortcut_amplitude": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2},
            "shortcut_probability": {"$ref": "#/$defs/fraction", "default": 0.9},
            "clutter": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.12},
            "grey": _GREY}})


def _downloaded(n_val_default: int) -> dict:
    """The config entry of a downloaded dataset (URL and checksum pinned in neurobias.sources)."""
    return {"properties": {
        "grey": _GREY,
        "n_val": {"type": "integer", "minimum": 1, "default": n_val_default,
                  "description": "images held out of the official training set for validation"},
        "seed": {"$ref": "#/$defs/seed", "default": 0},
        "manual_path": {"type": ["string", "null"], "description": "an archive you downloaded yourself; checked "
                        "against the pinned checksum, then used instead of downloading"},
        "url": {"type": "string", "description": "override the download URL (a mirror); the checksum stays pinned"}}}


declare(DatasetSourceSpec, name="cifar10", builder="neurobias.data.cifar:build_cifar10", download="cifar10",
        image_size=32, schema=_downloaded(5000), doc="CIFAR-10 (Krizhevsky 2009), downloaded")
declare(DatasetSourceSpec, name="cifar100", builder="neurobias.data.cifar:build_cifar100", download="cifar100",
        image_size=32, schema=_downloaded(5000), doc="CIFAR-100 with its 20 superclasses, downloaded")
declare(DatasetSourceSpec, name="tiny_imagenet", builder="neurobias.data.tiny_imagenet:build",
        download="tiny_imagenet", image_size=64, schema=_downloaded(10000),
        doc="Tiny ImageNet (200 classes, 64 px), downloaded")

# torch-backed names, imported on first use (PEP 562)
_LAZY = {"PreparedDataError": ".prepared", "load_split": ".prepared", "load_superclasses": ".prepared",
         "save_split": ".prepared", "CLASS_NAMES": ".synthetic", "make_synthetic_task": ".synthetic"}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["CLASS_NAMES", "PreparedDataError", "load_split", "load_superclasses", "make_synthetic_task",
           "save_split"]
