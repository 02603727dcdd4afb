"""A trained classifier on disk, and the network inputs made from a recording's stimulus images.

``model.pt`` (:func:`save_classifier`, read back by :func:`load_classifier`) holds the model's
config, its number of classes and input channels, the state dict in the canonical (contiguous)
layout and, for an MTL arm, its neural head; it is written atomically and read with
``weights_only=True``. Training writes it, every evaluation, figure and target job reads it.
:func:`stimuli_as_inputs` turns grey stimulus images into the inputs a network sees (training's
stimulus batches, V1 explained variance, the VGG control target, the MTL-oracle targets).

Import it as ``neurobias.models.io``; the names are not re-exported by :mod:`neurobias.models`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..checkpoint import atomic_save
from . import build_classifier


def stimuli_as_inputs(stimuli_uint8: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """Grey stimulus images [N,H,W] uint8 -> network inputs [N,C,size,size] in [0,1]."""
    x = torch.as_tensor(stimuli_uint8, dtype=torch.float32)[:, None] / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.expand(-1, channels, -1, -1).contiguous()


def save_classifier(model, model_cfg: dict, n_classes: int, channels: int, path: Path,
                    neural_head: dict | None = None) -> None:
    extra = {} if neural_head is None else {"neural_head": {k: v.detach().cpu() for k, v in neural_head.items()}}
    atomic_save({"model_cfg": dict(model_cfg), "num_classes": n_classes, "in_channels": channels, **extra,
                 # contiguous: the canonical layout, whatever memory format training used
                 "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}}, Path(path))


def load_classifier(path, device="cpu"):
    """Rebuild a trained classifier; ``weights_only=True`` so a checkpoint cannot run code."""
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = dict(blob["model_cfg"])
    options = {k: v for k, v in cfg.items() if k not in ("architecture", "diagnostic_layers")}
    sd = blob["state_dict"]
    model = build_classifier(cfg["architecture"], blob["num_classes"], blob["in_channels"],
                             sd["mean"].flatten().clone(), sd["std"].flatten().clone(), **options)
    model.load_state_dict(sd)
    return model.to(device).eval()
