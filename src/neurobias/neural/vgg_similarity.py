"""Li et al. 2019's VGG control: a similarity target from a CNN instead of a brain.

S_VGG is computed like S_neural (:func:`neurobias.neural.similarity.neural_similarity`), with the
units of conv3_1 (after its ReLU) of an ImageNet-trained VGG-19 in place of neurons. Stimuli are
fed at the resolution the classifier sees them (so a 140-px recording gives a manageable feature
map), grey replicated to RGB, normalised with ImageNet's channel statistics.

Weights: torchvision's ``VGG19_Weights.IMAGENET1K_V1``, fetched by the workflow's
``download_vgg19_weights`` rule (the only step that needs the network; torch.hub checks the hash
prefix in the file name) and loaded with ``weights_only=True``. ``weights="random"`` uses a seeded,
randomly initialised VGG-19 — for tests and as an untrained-network control.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision

from ..sources import VGG19_FILE, VGG19_URL
from .similarity import neural_similarity

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONV3_1 = 12  # features[:12] ends with conv3_1's ReLU


class WeightsUnavailable(RuntimeError):
    """The ImageNet VGG-19 weights could not be downloaded."""


def download_vgg19_weights(dest_dir: str | Path) -> Path:
    dest_dir = Path(dest_dir)
    try:
        torch.hub.load_state_dict_from_url(VGG19_URL, model_dir=str(dest_dir), check_hash=True,
                                           progress=True, weights_only=True)
    except Exception as e:  # urllib/hub raise many kinds; all mean the same to the user
        raise WeightsUnavailable(
            f"could not download the ImageNet VGG-19 weights from {VGG19_URL} into {dest_dir} ({e}). "
            f"The 'vgg' arm needs them: run where the network is reachable, or place the file "
            f"{VGG19_FILE} (from that URL) at {dest_dir / VGG19_FILE}, or set "
            f"studies.<study>.similarity.vgg_weights: random for an untrained control.") from e
    return dest_dir / VGG19_FILE


def vgg19_conv3_1(weights_path: str | Path | None, seed: int = 0) -> torch.nn.Module:
    if weights_path is None:
        torch.manual_seed(seed)
        vgg = torchvision.models.vgg19(weights=None)
    else:
        vgg = torchvision.models.vgg19(weights=None)
        vgg.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return vgg.features[:CONV3_1].eval()


@torch.no_grad()
def vgg_similarity(stimuli_uint8: np.ndarray, size: int, weights_path: str | Path | None, *, seed: int = 0,
                   device: str = "cpu", batch_size: int = 128) -> np.ndarray:
    """S_VGG [N, N] over grey stimuli [N, H, W] presented at ``size`` x ``size``."""
    from ..models.io import stimuli_as_inputs
    net = vgg19_conv3_1(weights_path, seed).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = stimuli_as_inputs(stimuli_uint8, 3, size)
    feats = [net((x[i:i + batch_size].to(device) - mean) / std).flatten(1).cpu()
             for i in range(0, len(x), batch_size)]
    return neural_similarity(torch.cat(feats).numpy())
