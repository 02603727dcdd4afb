"""The builders of the built-in neural targets (declared in :mod:`neurobias.neural`).

Each is ``(recording, options, inputs, device) -> np.ndarray``: ``recording`` the study's
:class:`~neurobias.neural.recording.Recording`, ``options`` the study's ``similarity`` settings the
kind reads (its ``options``), ``inputs`` the path of each of its ``reads``, ``device`` where a
network runs (``cpu`` for the kinds that run none). Only the kinds that run a network import torch.
"""

from __future__ import annotations

import numpy as np


def _v1_predictions(recording, inputs: dict, device: str) -> np.ndarray:
    from .v1_model import load_v1_model, predict_responses
    return predict_responses(load_v1_model(inputs["v1_model"], device), recording.images, device)


def model_similarity(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """Li's Neural(model): S_neural of the V1 model's predicted responses."""
    from .similarity import neural_similarity
    return neural_similarity(_v1_predictions(recording, inputs, device))


def data_similarity(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """Li's Neural(data): S_neural of the trial-averaged recorded responses."""
    from .similarity import neural_similarity
    return neural_similarity(recording.trial_average())


def shuffled_similarity(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """Li's Shuffle: the model matrix with image identities permuted."""
    from .similarity import shuffle_similarity
    return shuffle_similarity(np.load(inputs["target:model"]), options["shuffle_seed"])


def model_responses(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """Safarani 2021: the single-task V1 model's predictions [M, K]."""
    return _v1_predictions(recording, inputs, device)


def shuffled_responses(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """The V1 model's predictions with image identities permuted."""
    from .similarity import shuffle_responses
    return shuffle_responses(np.load(inputs["target:responses_model"]), options["shuffle_seed"])


def teacher(kind: str):
    """Federer 2020's teacher RSM of one kind (:func:`neurobias.neural.rsm.teacher_rsm`)."""
    def build(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
        from .rsm import teacher_rsm
        return teacher_rsm(kind, recording.trial_average(), metric=options["rsm_metric"],
                           seed=options["shuffle_seed"], gaussian_other=options.get("gaussian_other"))
    build.__name__ = kind
    return build


rsm_v1 = teacher("rsm_v1")
rsm_v1_shuffle = teacher("rsm_v1_shuffle")
rsm_gaussian_v1 = teacher("rsm_gaussian_v1")
rsm_gaussian_other = teacher("rsm_gaussian_other")


def vgg_similarity(recording, options: dict, inputs: dict, device: str) -> np.ndarray:
    """Li's VGG control: S of ImageNet VGG-19 conv3_1 features (no weights file: a randomly
    initialised VGG-19, as the config's ``vgg_weights: random`` asks)."""
    from .vgg_similarity import vgg_similarity as similarity
    return similarity(recording.images, options["image_size"], inputs.get("vgg_weights") or None,
                      seed=options["shuffle_seed"], device=device)
