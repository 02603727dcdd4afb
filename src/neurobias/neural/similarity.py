"""Representational similarity matrices (Li et al. 2019, section 3) and their diagnostics.

Neural similarity (Li et al. 2019, Eq. 1-2). Responses r_{n,k} of neuron k to image n are z-scored
per neuron over images, then the similarity of images i and j is the cosine of their population
vectors:

    z_{n,k}  = (r_{n,k} - mean_n r_{n,k}) / std_n r_{n,k}
    S_ij     = <z_i, z_j> / (||z_i|| ||z_j||)

CNN similarity (Li et al. 2019, Eq. 9-10). For layer l with activations a^l_{n,u} (flattened:
unit u = channel x position), each unit is z-scored over the B images of the stimulus batch,
exactly as each neuron is above, then S^l_ij is the cosine of the z-scored vectors:

    z^l_{n,u} = (a^l_{n,u} - mean_n a^l_{n,u}) / sqrt(var_n a^l_{n,u} + eps)      (eps = 1e-8)
    S^l_ij    = <z^l_i, z^l_j> / (||z^l_i|| ||z^l_j||)

Both sides are then normalised the same way, so a unit's weight in the cosine does not depend on
its scale (with centring alone, a few high-variance units dominate S^l while every neuron counts
alike in S^neural). A dead unit (the same value for every image) contributes 0; eps, inside the
square root as in BatchNorm, keeps it and its gradient finite (a plain SD has an infinite
derivative at 0) and is far below the variance of any live unit. DESIGN.md section 6 ("centred
and normalised", mirroring the neurons' z-scoring) reads the same. Layers combine with trainable
weights gamma = softmax(w): S^CNN_ij = sum_l gamma_l S^l_ij (see
:mod:`neurobias.regularisers.similarity`).

Kinds of target (an arm's ``target``; built by :func:`neurobias.jobs.similarity`):

- ``model``: from the V1 predictive model's predicted (denoised) responses (Li's Neural(model));
- ``data``: from trial-averaged recorded responses (Neural(data));
- ``shuffle``: the ``model`` matrix with image identities permuted (Li's Shuffle control);
- ``vgg``: from ImageNet VGG-19 conv3_1 features (:mod:`neurobias.neural.vgg_similarity`).

Z-scoring the CNN features over a small stimulus batch makes their off-diagonal cosines average
about -1/(B-1) rather than 0 (B = 64: -0.016); the neural target is z-scored over all images.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Nothing here imports torch: the network side works on the tensors it is given through their own
# methods, so a job that computes a neural target (numpy) starts without loading torch (2.9 s
# of CPU less per job on the 2-core machine, measured).


def neural_similarity(responses: np.ndarray) -> np.ndarray:
    """S [N, N] from responses [N, K]; NaN-aware for recordings where a neuron missed an image.

    A missing response contributes zero to both the dot product and the norms (after z-scoring,
    i.e. it is treated as the neuron's mean), which keeps S a valid cosine matrix.
    """
    r = np.asarray(responses, dtype=np.float64)
    mean = np.nanmean(r, axis=0, keepdims=True)
    std = np.nanstd(r, axis=0, keepdims=True)
    keep = (std[0] > 0)
    z = np.where(np.isnan(r), 0.0, (r - mean) / np.where(std > 0, std, 1.0))[:, keep]
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = z / np.where(norm > 0, norm, 1.0)
    s = z @ z.T
    return np.clip(s, -1.0, 1.0).astype(np.float32)


FEATURE_EPS = 1e-8  # added to each unit's variance over the batch: a dead unit gives 0, not 0/0


def feature_similarity(features: torch.Tensor) -> torch.Tensor:
    """S^l [B, B] from one layer's activations [B, ...] of a stimulus batch (Li 2019 Eq. 9): every
    unit z-scored over the batch (population SD, as :func:`neural_similarity`), then the cosine
    between images."""
    a = features.flatten(1).float()
    a = a - a.mean(dim=0, keepdim=True)
    a = a / (a.pow(2).mean(dim=0, keepdim=True) + FEATURE_EPS).sqrt()
    return cosine_similarity_rows(a)


def cosine_similarity_rows(a: torch.Tensor) -> torch.Tensor:
    """[B, B] cosines between the rows of ``a`` [B, U]: torch.nn.functional.normalize's operations
    (each row divided by max(norm, 1e-8)), through the tensor's own methods."""
    a = a / a.norm(2, 1, keepdim=True).clamp_min(1e-8).expand_as(a)
    return a @ a.T


def shuffle_similarity(similarity: np.ndarray, seed: int) -> np.ndarray:
    """Permute image identities: S'_ij = S_{p(i) p(j)}. Keeps the distribution of values and the
    matrix's spectrum, destroys which image is similar to which (Li 2019's Shuffle control)."""
    perm = np.random.default_rng(np.random.SeedSequence([seed, 17])).permutation(len(similarity))
    return similarity[np.ix_(perm, perm)]


def shuffle_responses(responses: np.ndarray, seed: int) -> np.ndarray:
    """Permute image identities of a response table [M, K] (rows): Safarani 2021's MTL-shuffled
    targets keep every response pattern but not which image evoked it."""
    perm = np.random.default_rng(np.random.SeedSequence([seed, 19])).permutation(len(responses))
    return responses[perm]


def off_diagonal(similarity: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Upper-triangle values, optionally of the sub-matrix on ``rows``."""
    s = similarity if rows is None else similarity[np.ix_(rows, rows)]
    return s[np.triu_indices(len(s), k=1)]


def split_half_reliability(responses: np.ndarray, seed: int = 0) -> float:
    """Correlation of the off-diagonal S computed from two disjoint halves of the repeats,
    Spearman-Brown corrected to the full number of repeats. responses: [N, R, K], R >= 2."""
    n_rep = responses.shape[1]
    if n_rep < 2:
        return float("nan")
    perm = np.random.default_rng(seed).permutation(n_rep)
    halves = perm[: n_rep // 2], perm[n_rep // 2:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neuron in one half
        s = [neural_similarity(np.nanmean(responses[:, h], axis=1)) for h in halves]
    r = float(np.corrcoef(off_diagonal(s[0]), off_diagonal(s[1]))[0, 1])
    return 2 * r / (1 + r)


def target_diagnostics(targets: dict[str, np.ndarray], test_rows: np.ndarray,
                       responses: np.ndarray | None = None) -> dict:
    """Numbers that say whether a similarity target can teach anything (DESIGN.md section 8):
    spread of off-diagonal similarities per kind, split-half reliability of the data matrix, and
    agreement of each kind with the recorded data on held-out (test-tier) images."""
    out: dict = {"n_images": int(len(next(iter(targets.values())))), "n_test_images": int(len(test_rows))}
    for kind, s in targets.items():
        off = off_diagonal(s)
        out[kind] = {"offdiag_mean": float(off.mean()), "offdiag_sd": float(off.std())}
    if responses is not None:
        out["data_split_half_reliability"] = split_half_reliability(responses)
        data_test = off_diagonal(neural_similarity(np.nanmean(responses, axis=1)), test_rows)
        for kind, s in targets.items():
            out[kind]["heldout_r_with_data"] = float(np.corrcoef(off_diagonal(s, test_rows), data_test)[0, 1])
    return out
