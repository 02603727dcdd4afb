"""The prepared tensor format every dataset is converted to (synthetic, CIFAR, Tiny ImageNet).

One file per split, ``results/data/{dataset}/{split}.pt``, a dict saved with ``torch.save``::

    images  uint8 tensor [N, C, H, W]   (0-255; C = 3 for colour, 1 for grey)
    labels  int64 tensor [N]            (0 .. n_classes-1)
    classes list[str]                   (class names, index = label)
    superclass_of_class list[int]       (optional: CIFAR-100's coarse label of each class)
    superclasses list[str]              (optional: the coarse class names)

Loaded with ``weights_only=True``: plain tensors and lists only, nothing that runs code.
Models normalise internally, so a split is exactly the stored pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


class PreparedDataError(ValueError):
    """A prepared split does not follow the documented format."""


def save_split(path: str | Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
               superclass_of_class: list[int] | None = None, superclasses: list[str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"images": torch.as_tensor(np.ascontiguousarray(images)),
               "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64)),
               "classes": list(classes)}
    if superclass_of_class is not None:
        payload["superclass_of_class"] = [int(c) for c in superclass_of_class]
        payload["superclasses"] = list(superclasses or [])
    validate_split(payload, str(path))
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def validate_split(payload: dict, source: str) -> None:
    def fail(msg):
        raise PreparedDataError(f"{source}: {msg}")
    if not isinstance(payload, dict):
        fail(f"expected a dict with images, labels and classes, got {type(payload).__name__}")
    for key in ("images", "labels", "classes"):
        if key not in payload:
            fail(f"missing key {key!r}")
    images, labels, classes = payload["images"], payload["labels"], payload["classes"]
    if images.dtype != torch.uint8 or images.ndim != 4:
        fail(f"'images' must be a uint8 tensor [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        fail(f"'labels' must be int64 [{images.shape[0]}], got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        fail(f"'labels' must lie in 0..{len(classes) - 1} (one per class name)")
    if "superclass_of_class" in payload:
        sup = payload["superclass_of_class"]
        if len(sup) != len(classes) or any(not 0 <= c < len(payload.get("superclasses", [])) for c in sup):
            fail("'superclass_of_class' needs one index into 'superclasses' per class")


def load_split(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    validate_split(payload, str(path))
    return payload["images"], payload["labels"], payload["classes"]


def load_superclasses(path: str | Path) -> list[int] | None:
    """The coarse label of each class (CIFAR-100's 20 superclasses), or None if the split has none."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload.get("superclass_of_class")
