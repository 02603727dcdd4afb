"""Representational similarity matrices for Federer et al. 2020 and their teacher variants.

An RSM holds one similarity per pair of stimulus images, computed between the two images'
response vectors (neurons for V1, flattened units for a network layer). Two measures:

- ``cosine``: cos(r_i, r_j) on the raw vectors. Federer et al.'s released code
  (cfederer/TrainCNNsWithNeuralData, ``RSA.py``, ``compute_cost_V``) uses the cosine distance
  1 - cos for both the V1 teacher and the network, so this is the faithful choice.
- ``pearson``: the Pearson correlation of r_i and r_j (each vector centred on its own mean), as
  DESIGN.md section 6 and the paper's "correlation" wording describe it.

Neither centres units over images, unlike Li et al.'s similarity (:mod:`.similarity`): a neuron's
mean rate is part of the population vector here, which is why the "Gaussian V1-stats" teacher
(per-neuron means and SDs of the recording) gives a structured RSM while Gaussian vectors with
one common mean give a flat one.

Teacher variants (an arm's ``target``; :func:`teacher_rsm`):

- ``rsm_v1``: the RSM of the trial-averaged recorded responses;
- ``rsm_v1_shuffle``: the same matrix with image identities permuted (values kept, pairs broken);
- ``rsm_gaussian_v1``: the RSM of Gaussian vectors drawn per neuron with that neuron's mean and
  SD over images ("Gaussian V1-stats");
- ``rsm_gaussian_other``: the RSM of Gaussian vectors with one mean and SD for every neuron, taken
  from the config (``similarity.gaussian_other``; "Gaussian non-V1-stats"). Federer et al.'s
  released non-V1 teacher has a mean cosine distance of 0.013 (near-identical images) against
  0.235 for V1; the default mean 10, SD 1 gives about 0.01.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .similarity import cosine_similarity_rows, shuffle_similarity

if TYPE_CHECKING:  # no torch at run time, as neurobias.neural.similarity
    import torch

METRICS = ("cosine", "pearson")
TEACHERS = ("rsm_v1", "rsm_v1_shuffle", "rsm_gaussian_v1", "rsm_gaussian_other")


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"similarity.rsm_metric: unknown {metric!r}; expected one of {METRICS}")


def _recorded_neurons(responses: np.ndarray) -> np.ndarray:
    """Responses [N, K] without the neurons that have no response to any image."""
    r = np.asarray(responses, dtype=np.float64)
    return r[:, ~np.all(np.isnan(r), axis=0)]


def response_rsm(responses: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """RSM [N, N] of responses [N images, K neurons]. A missing (NaN) response is replaced by
    that neuron's mean over images, which keeps every pair defined; a neuron never recorded is
    left out."""
    _check_metric(metric)
    r = _recorded_neurons(responses)
    r = np.where(np.isnan(r), np.nanmean(r, axis=0, keepdims=True), r)
    if metric == "pearson":
        r = r - r.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    u = r / np.where(norm > 0, norm, 1.0)
    return np.clip(u @ u.T, -1.0, 1.0).astype(np.float32)


def feature_rsm(features: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """RSM [B, B] of one layer's activations [B, ...] (the network side of the same measure)."""
    _check_metric(metric)
    a = features.flatten(1).float()
    if metric == "pearson":
        a = a - a.mean(dim=1, keepdim=True)
    return cosine_similarity_rows(a)


def gaussian_responses(responses: np.ndarray, seed: int, mean: float | None = None,
                       std: float | None = None) -> np.ndarray:
    """Gaussian stand-in responses of the recording's shape [N, K].

    ``mean``/``std`` None: each neuron's own mean and SD over images (NaN-aware), the "V1-stats"
    teacher; numbers: every neuron gets N(mean, std^2), the "non-V1-stats" teacher."""
    r = _recorded_neurons(responses)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    mu = np.nanmean(r, axis=0) if mean is None else np.full(r.shape[1], float(mean))
    sd = np.nanstd(r, axis=0) if std is None else np.full(r.shape[1], float(std))
    return mu + sd * rng.standard_normal(r.shape)


def teacher_rsm(kind: str, trial_averaged: np.ndarray, *, metric: str = "cosine", seed: int = 0,
                gaussian_other: dict | None = None) -> np.ndarray:
    """The teacher RSM of one kind (see the module docstring) over all stimulus images."""
    if kind == "rsm_v1":
        return response_rsm(trial_averaged, metric)
    if kind == "rsm_v1_shuffle":
        return shuffle_similarity(response_rsm(trial_averaged, metric), seed)
    if kind == "rsm_gaussian_v1":
        return response_rsm(gaussian_responses(trial_averaged, seed), metric)
    if kind == "rsm_gaussian_other":
        other = {"mean": 10.0, "std": 1.0, **(gaussian_other or {})}
        return response_rsm(gaussian_responses(trial_averaged, seed, other["mean"], other["std"]), metric)
    raise ValueError(f"RSM teacher {kind!r}: expected one of {TEACHERS}")
