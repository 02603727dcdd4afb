"""A data-driven predictive model of V1 responses: convolutional core + Gaussian readout.

Architecture (Lurz et al. 2021, "Generalization in data-driven models of primary visual cortex",
ICLR; Sinz lab ``neuralpredictors``: ``Stacked2dCore`` + ``FullGaussian2d``)::

    image [B,1,H,W] --core--> feature map [B,C,h,w] --GaussianReadout--> [B,K] --elu(.)+1--> rate

* **Core**: ``core_layers`` blocks of conv -> BatchNorm -> ELU, "same" padding. The first
  convolution (``kernel_size``) has stride ``core_stride`` (default 2), the later ones
  (``hidden_kernel_size``, default 3) stride 1 (see *Speed* below).
* **Readout** (per neuron k): a position ``mu_k`` in [-1,1]^2 (grid_sample coordinates of the
  feature map, x = width axis) and a width ``sigma_k``. Training first clamps the parameter
  ``mu_k`` itself into [-1,1]^2 (in place, as FullGaussian2d's ``sample_grid`` does), then samples
  the position ``p = clamp(mu_k + sigma_k * eps, -1, 1)``, ``eps ~ N(0, I)`` (reparameterisation,
  so gradients reach both mu and sigma); evaluation uses ``p = clamp(mu_k, -1, 1)``. The feature
  vector ``f_k = F(p)`` (bilinear interpolation of the feature map) is mapped linearly:
  ``z_k = w_k . f_k + b_k``. See :class:`GaussianReadout` for the parity with the authors' code.
* **Output**: ``r_k = elu(z_k) + 1 > 0``, a firing rate suitable for a Poisson likelihood.

Training (:func:`fit_v1_model`) minimises the Poisson negative log-likelihood of the
trial-averaged response ``y`` (up to terms constant in the prediction)::

    L = sum_{n,k} m_{nk} (r_{nk} - y_{nk} log(r_{nk} + eps)) / sum_{n,k} m_{nk}

with ``m_{nk} = 0`` where image n has no recorded trial for neuron k (NaN in the recording).

Evaluation (:func:`evaluate_v1_model`) reports the Pearson correlation to the trial average and
the fraction of explainable variance explained (FEVE, Cadena et al. 2019, PLoS Comput Biol)::

    FEVE_k = 1 - (MSE_k - noise_var_k) / (total_var_k - noise_var_k)

where ``MSE_k`` is the mean squared error between *single-trial* responses and the prediction,
``noise_var_k`` the mean over images of the across-repeat variance (ddof=1) and ``total_var_k`` the
variance of all single-trial responses (ddof=1).

*Speed*: a stride-1 core of three 5x5, 32-channel layers on 32x32 images costs ~9 s per epoch of
1350 images on 2 CPU threads, far too slow for the < 1 min fit the workflow needs. Subsampling
once in the first layer (which still filters the input at full resolution; the readout
interpolates the coarser map) and 3x3 hidden kernels bring it to ~0.6 s. The receptive field of
the default core is still 5 + 2*2*(3-1) = 13 input pixels.

The ``neuralpredictors`` package is not used because its 0.3.0 release does not import on
Python >= 3.10.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurobias.models.random_draws import normal
from neurobias.neural.recording import Recording
from neurobias.seeding import forked_global_rng

__all__ = [
    "GaussianReadout",
    "V1PredictiveModel",
    "normalise_images",
    "poisson_loss",
    "pearson_per_neuron",
    "compute_feve",
    "fit_v1_model",
    "evaluate_v1_model",
    "predict_responses",
    "save_v1_model",
    "load_v1_model",
]

CHECKPOINT_FORMAT = "neurobias.v1_model/1"


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
GAUSS_TYPES = ("isotropic", "uncorrelated")


class GaussianReadout(nn.Module):
    """Per neuron: a position mu in [-1,1]^2 and a width sigma; in training sample mu + sigma*N(0,1)
    (clamped to [-1,1]), in eval use mu; F.grid_sample on the core's feature map [B,C,h,w] at that
    position -> [B,K,C]; then a per-neuron linear map over channels + bias. (Lurz et al. 2021 /
    Sinz lab neuralpredictors' FullGaussian2d, and the legacy ``Gaussian2d`` of Safarani et al.
    2021's MTL head, written by hand because neuralpredictors 0.3.0 does not import on
    Python>=3.10.)

    ``z_k = w_k . F(clamp(mu_k + sigma_k * eps, -1, 1)) + b_k`` with ``eps ~ N(0, I_2)`` in training
    and ``eps = 0`` in eval.

    Training-mode sampling follows the authors' ``sample_grid`` (parity:
    ``tests/test_readout_parity.py`` against ``tests/fixtures/parity/gaussian_readout.npz``):

    * ``clamp_mu`` (default True): before sampling, the parameter ``mu`` itself is clamped into
      [-1, 1] in place (outside autograd), as both FullGaussian2d and Gaussian2d do on every
      ``sample_grid`` call. The gradient then reaches the clamped value unchanged, and the optimiser
      steps from it, so a position cannot drift beyond the feature map. False: the behaviour before
      issue 31, where only the sampled position was clamped and ``mu`` could leave [-1, 1].
    * ``clamp_sigma`` (default False): clamp ``sigma`` in place to >= 0 before sampling, as the
      legacy ``Gaussian2d`` (mlutils.layers.legacy, Safarani's MTL head) and FullGaussian2d before
      January 2022 (non-"full" types) do. False, as current FullGaussian2d: a negative sigma samples
      with its sign (the same distribution, since eps is symmetric).
    * ``gauss_type``: ``"isotropic"`` (default; ``sigma`` [K, 1], one width per neuron) or
      ``"uncorrelated"`` (``sigma`` [K, 2], one width per axis: Gaussian2d's, and FullGaussian2d's
      ``gauss_type="uncorrelated"``).

    Evaluation mode reads at ``clamp(mu, -1, 1)`` and leaves the parameters alone (the authors'
    code clamps ``mu`` in place there too; the output is the same).

    The feature map is read with ``padding_mode="border"``, theirs with zero padding; with
    ``align_corners=True`` (theirs too) and positions clamped to [-1, 1] the two are identical.

    Parameters: ``mu`` [K, 2] (x, y in grid_sample convention), ``sigma`` [K, 1] or [K, 2],
    ``weight`` [K, C], ``bias`` [K]. Set ``generator`` (a :class:`torch.Generator` on the features'
    device) to make the training-time sampling independent of the global RNG.
    """

    def __init__(self, in_channels: int, n_neurons: int, init_sigma: float = 0.2, seed: int = 0,
                 init_mu_range: float = 0.1, *, gauss_type: str = "isotropic", clamp_mu: bool = True,
                 clamp_sigma: bool = False):
        super().__init__()
        if gauss_type not in GAUSS_TYPES:
            raise ValueError(f"gauss_type must be one of {GAUSS_TYPES}, got {gauss_type!r}")
        self.in_channels = int(in_channels)
        self.n_neurons = int(n_neurons)
        self.gauss_type = gauss_type
        self.clamp_mu = bool(clamp_mu)
        self.clamp_sigma = bool(clamp_sigma)
        g = torch.Generator().manual_seed(int(seed))
        # Start near the centre, as FullGaussian2d does: the sampling width lets every neuron
        # "see" a neighbourhood, so the gradient on mu can pull it towards its receptive field.
        mu = (torch.rand(self.n_neurons, 2, generator=g) * 2 - 1) * init_mu_range
        self.mu = nn.Parameter(mu)
        n_widths = 1 if gauss_type == "isotropic" else 2
        self.sigma = nn.Parameter(torch.full((self.n_neurons, n_widths), float(init_sigma)))
        # Mean 1/C: every channel contributes a little at first (FullGaussian2d's init).
        w = torch.randn(self.n_neurons, self.in_channels, generator=g) * 0.01 + 1.0 / self.in_channels
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(self.n_neurons))
        self.generator: torch.Generator | None = None

    @torch.no_grad()
    def _clamp_parameters(self) -> None:
        """The authors' in-place clamps at the start of ``sample_grid`` (``mu.clamp_(-1, 1)``,
        ``sigma.clamp_(min=0)``), written as ``copy_`` of the clamped value: the same numbers, and
        unlike ``clamp_`` it has a vmap batching rule (the stacked engine, :mod:`neurobias.stacked`)."""
        if self.clamp_mu:
            self.mu.copy_(self.mu.clamp(-1.0, 1.0))
        if self.clamp_sigma:
            self.sigma.copy_(self.sigma.clamp(min=0.0))

    def positions(self, batch_size: int) -> Tensor:
        """Readout positions, [B, K, 1, 2] (the grid layout F.grid_sample expects)."""
        if self.training:
            self._clamp_parameters()
            mu = self.mu
            eps = normal((batch_size, self.n_neurons, 2), device=mu.device, dtype=mu.dtype, generator=self.generator)
            pos = mu.unsqueeze(0) + self.sigma.unsqueeze(0) * eps
        else:
            pos = self.mu.unsqueeze(0).expand(batch_size, -1, -1)
        # Clamp (rather than let grid_sample zero-pad) so a neuron never reads pure padding.
        return pos.clamp(-1.0, 1.0).unsqueeze(2)

    def forward(self, features: Tensor) -> Tensor:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"expected features [B, {self.in_channels}, h, w], got {tuple(features.shape)}")
        grid = self.positions(features.shape[0])
        sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border",
                                align_corners=True)             # [B, C, K, 1]
        sampled = sampled.squeeze(-1).transpose(1, 2)            # [B, K, C]
        return (sampled * self.weight.unsqueeze(0)).sum(-1) + self.bias


class V1PredictiveModel(nn.Module):
    """Conv core (a few conv+BN+ELU layers, configurable channels/kernel sizes/layers, padding to keep size)
    + GaussianReadout + output nonlinearity elu(x)+1 (responses are non-negative rates).

    ``kernel_size`` is the (odd) kernel of the first, input layer and ``hidden_kernel_size`` that
    of the later layers (None: the same as ``kernel_size``), as in Lurz et al.'s core (input_kern,
    hidden_kern). ``core_stride`` is the stride of the first convolution only (every convolution
    keeps the size apart from that subsampling). Both defaults (stride 2, hidden 3x3) are chosen
    for speed; see the module docstring. ``input_mean``/``input_std``
    are the statistics :func:`normalise_images` uses for this model (pixel units, 0-255).

    Construction is seeded: the same ``seed`` gives the same initial weights, without touching the
    caller's global RNG.
    """

    def __init__(self, n_neurons: int, image_size: int, core_channels: int = 32, core_layers: int = 3,
                 kernel_size: int = 5, seed: int = 0, input_mean: float = 0.,
                 input_std: float = 1., core_stride: int = 2, hidden_kernel_size: int | None = 3,
                 readout_init_sigma: float = 0.2):
        super().__init__()
        if core_layers < 1:
            raise ValueError(f"core_layers must be >= 1, got {core_layers}")
        hidden = int(kernel_size if hidden_kernel_size is None else hidden_kernel_size)
        kernels = [int(kernel_size)] + [hidden] * (int(core_layers) - 1)
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel sizes must be odd and positive so that padding keeps the size, "
                             f"got kernel_size={kernel_size}, hidden_kernel_size={hidden_kernel_size}")
        if core_stride < 1:
            raise ValueError(f"core_stride must be >= 1, got {core_stride}")
        if input_std <= 0:
            raise ValueError(f"input_std must be > 0, got {input_std}")
        self._init_kwargs = dict(
            n_neurons=int(n_neurons), image_size=int(image_size), core_channels=int(core_channels),
            core_layers=int(core_layers), kernel_size=int(kernel_size), seed=int(seed),
            input_mean=float(input_mean), input_std=float(input_std), core_stride=int(core_stride),
            hidden_kernel_size=None if hidden_kernel_size is None else int(hidden_kernel_size),
            readout_init_sigma=float(readout_init_sigma))
        self.n_neurons = int(n_neurons)
        self.image_size = int(image_size)
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)

        # Seed module init inside a forked RNG: reproducible weights, caller's RNG left untouched.
        with forked_global_rng("cpu", int(seed)):
            layers: list[nn.Module] = []
            c_in = 1
            for i, k in enumerate(kernels):
                stride = int(core_stride) if i == 0 else 1
                # No conv bias: BatchNorm's shift makes it redundant.
                layers += [nn.Conv2d(c_in, int(core_channels), k, stride=stride, padding=k // 2, bias=False),
                           nn.BatchNorm2d(int(core_channels)),
                           nn.ELU()]
                c_in = int(core_channels)
            self.core = nn.Sequential(*layers)
        self.readout = GaussianReadout(int(core_channels), self.n_neurons,
                                       init_sigma=float(readout_init_sigma), seed=int(seed) + 1)

    def init_kwargs(self) -> dict:
        """Constructor kwargs (plain Python types) that rebuild this architecture."""
        return dict(self._init_kwargs)

    def normalise(self, images_uint8: np.ndarray | Tensor) -> Tensor:
        """uint8 images [N,H,W] -> normalised float [N,1,H,W] with this model's statistics."""
        return normalise_images(images_uint8, self.input_mean, self.input_std)

    def forward(self, images_float: Tensor) -> Tensor:
        """Predicted rates [B, K] for normalised images [B,1,H,W] (or [B,H,W])."""
        if images_float.ndim == 3:
            images_float = images_float.unsqueeze(1)
        return F.elu(self.readout(self.core(images_float))) + 1.0


def normalise_images(images_uint8: np.ndarray | Tensor, mean: float, std: float) -> Tensor:
    """[N,H,W] uint8 -> [N,1,H,W] float32, ``(x - mean) / std`` in pixel units."""
    x = torch.as_tensor(np.asarray(images_uint8) if not isinstance(images_uint8, Tensor) else images_uint8)
    if x.ndim != 3:
        raise ValueError(f"expected images [N, H, W], got shape {tuple(x.shape)}")
    return ((x.to(torch.float32) - float(mean)) / float(std)).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# losses and metrics
# ----------------------------------------------------------------------------------------------
def poisson_loss(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Masked Poisson NLL without the log(y!) term: ``sum m (r - y log(r + eps)) / sum m``.

    ``target`` must already have its masked entries replaced by a finite value (any: they are
    multiplied by zero, but NaN * 0 would still be NaN).
    """
    per_entry = pred - target * torch.log(pred + eps)
    return (per_entry * mask).sum() / mask.sum().clamp_min(1.0)


def pearson_per_neuron(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r per column of [N, K] arrays, ignoring rows where either value is NaN.

    NaN for a neuron with < 2 usable images or zero variance in either argument (r is undefined).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    valid = np.isfinite(pred) & np.isfinite(target)
    n = valid.sum(0)
    p = np.where(valid, pred, 0.0)
    t = np.where(valid, target, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pm = p.sum(0) / n
        tm = t.sum(0) / n
        pc = np.where(valid, p - pm, 0.0)
        tc = np.where(valid, t - tm, 0.0)
        cov = (pc * tc).sum(0)
        denom = np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))
        r = cov / denom
    r[(n < 2) | ~(denom > 0)] = np.nan
    return r


def compute_feve(responses: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FEVE per neuron (Cadena et al. 2019) from single trials [N,R,K] and predictions [N,K].

    ``FEVE_k = 1 - (MSE_k - noise_var_k) / (total_var_k - noise_var_k)`` with

    * ``MSE_k``: mean over all recorded single trials of ``(y_nrk - pred_nk)^2``;
    * ``noise_var_k``: mean over images (with >= 2 recorded repeats) of the across-repeat
      variance of ``y_n.k`` (ddof=1);
    * ``total_var_k``: variance (ddof=1) of all recorded single trials of neuron k.

    Returns ``(feve [K], valid [K])``: ``valid`` is False (and FEVE NaN) where the explainable
    variance ``total_var - noise_var`` is not positive or cannot be estimated.
    """
    y = np.asarray(responses, dtype=np.float64)
    pred = np.asarray(predictions, dtype=np.float64)
    if y.ndim != 3 or pred.shape != (y.shape[0], y.shape[2]):
        raise ValueError(f"need responses [N,R,K] and predictions [N,K], got {y.shape} and {pred.shape}")
    rec = ~np.isnan(y)
    n_rep = rec.sum(1)                                                       # [N, K]
    with np.errstate(invalid="ignore", divide="ignore"):
        img_mean = np.nansum(y, 1) / n_rep
        ss = np.where(rec, (y - img_mean[:, None, :]) ** 2, 0.0).sum(1)
        rep_var = np.where(n_rep >= 2, ss / (n_rep - 1), np.nan)              # [N, K]
        has_var = np.isfinite(rep_var)
        noise_var = np.where(has_var, rep_var, 0.0).sum(0) / has_var.sum(0)
        n_tot = rec.sum((0, 1))
        tot_mean = np.nansum(y, (0, 1)) / n_tot
        total_var = np.where(rec, (y - tot_mean) ** 2, 0.0).sum((0, 1)) / (n_tot - 1)
        mse = np.where(rec, (y - pred[:, None, :]) ** 2, 0.0).sum((0, 1)) / n_tot
        explainable = total_var - noise_var
        valid = np.isfinite(explainable) & (explainable > 0)
        feve = np.where(valid, 1.0 - (mse - noise_var) / explainable, np.nan)
    return feve, valid


def _nan_to_none(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


# ----------------------------------------------------------------------------------------------
# prediction, evaluation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def _predict_normalised(model: V1PredictiveModel, x: Tensor, batch_size: int) -> Tensor:
    outs = [model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else x.new_zeros((0, model.n_neurons))


def predict_responses(model: V1PredictiveModel, images_uint8: np.ndarray, device="cpu",
                      batch_size: int = 256) -> np.ndarray:
    """Predicted rates [N, K] float32 for uint8 images [N,H,W] (eval mode: readout at mu).

    Normalises with the model's own ``input_mean``/``input_std``. Moves the model to ``device``;
    its train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        x = model.normalise(images_uint8).to(device)
        model.to(device)
        return _predict_normalised(model, x, batch_size).cpu().numpy().astype(np.float32)
    finally:
        model.train(was_training)


def evaluate_v1_model(model: V1PredictiveModel, recording: Recording, tier: str = "test",
                      device="cpu") -> dict:
    """Correlation and FEVE of ``model`` on one tier, next to a null model.

    * ``test_correlation``: mean over neurons of Pearson r(prediction, trial average), neurons with
      undefined r (constant trial average, < 2 images) left out and counted in
      ``n_neurons_without_correlation``.
    * ``feve``: mean over neurons of FEVE (:func:`compute_feve`); neurons whose total variance does
      not exceed the noise variance are left out and counted in ``n_neurons_excluded_feve``.
    * ``null_test_correlation`` / ``null_feve``: the same for the model that predicts each neuron's
      mean trial-averaged response on the ``train`` tier. A constant has no correlation, so
      ``null_test_correlation`` is 0.0 by definition.
    * ``per_neuron``: ``{"correlation": [...], "feve": [...]}``, None where undefined.

    The keys keep the ``test_`` prefix whatever ``tier`` is; ``tier`` records which one.
    """
    mask = recording.tier_mask(tier)
    responses = recording.responses[mask]
    target = recording.trial_average()[mask]
    pred = predict_responses(model, recording.images[mask], device=device)

    corr = pearson_per_neuron(pred, target)
    feve, feve_ok = compute_feve(responses, pred)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # neuron never recorded in train: NaN
        train_mean = np.nanmean(recording.trial_average()[recording.tier_mask("train")], axis=0)
    null_pred = np.broadcast_to(train_mean, pred.shape)
    null_feve, _ = compute_feve(responses, null_pred)  # same exclusions: validity ignores predictions

    def mean_or_nan(x):
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")

    return {
        "tier": tier,
        "test_correlation": mean_or_nan(corr),
        "feve": mean_or_nan(feve),
        "null_test_correlation": 0.0,
        "null_feve": mean_or_nan(null_feve),
        "n_neurons": int(recording.n_neurons),
        "n_test_images": int(mask.sum()),
        "n_neurons_without_correlation": int((~np.isfinite(corr)).sum()),
        "n_neurons_excluded_feve": int((~feve_ok).sum()),
        "per_neuron": {"correlation": _nan_to_none(corr), "feve": _nan_to_none(feve)},
    }


# ----------------------------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------------------------
def _inverse_output_nonlinearity(rate: np.ndarray) -> np.ndarray:
    """z with elu(z) + 1 = rate, for rate > 0: rate - 1 above 1, log(rate) below."""
    rate = np.maximum(rate, 1e-3)
    return np.where(rate >= 1.0, rate - 1.0, np.log(rate))


def _contrast_positions(images: np.ndarray, rates: np.ndarray, feature_shape: tuple[int, int],
                        stride: int, smooth: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Readout positions [K, 2] (grid_sample x, y) at each neuron's peak correlation with local contrast.

    Both simple (rectified linear) and complex (energy) V1 cells respond more when the local
    contrast energy in their receptive field is high, so the argmax over positions of
    corr(y_k, gaussian_filter(x^2)) locates the receptive field without knowing its phase.
    ``images``: normalised [N,H,W]; ``rates``: [N,K] trial averages, NaN allowed.

    Returns ``(positions, found)``; ``found`` [K] is False where no position correlates
    positively (e.g. a neuron without fitting data): those neurons keep their default position.
    """
    from scipy.ndimage import gaussian_filter

    n, h, w = images.shape
    x = images - images.mean(axis=(1, 2), keepdims=True)
    energy = gaussian_filter(x ** 2, sigma=(0, smooth, smooth)).reshape(n, h * w)
    energy = (energy - energy.mean(0)) / (energy.std(0) + 1e-8)
    # NaN -> neuron mean: a missing value then adds nothing to the covariance.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neuron: handled via `found`
        y = np.where(np.isnan(rates), np.nanmean(rates, axis=0), rates)
    y = np.nan_to_num(y, nan=0.0)
    y = (y - y.mean(0)) / (y.std(0) + 1e-8)
    corr = (energy.T @ y).reshape(h, w, -1)                          # [H, W, K]
    corr = gaussian_filter(corr, sigma=(smooth, smooth, 0)).reshape(h * w, -1)
    peak = corr.argmax(0)
    found = corr.max(0) > 0
    rows, cols = np.unravel_index(peak, (h, w))
    fh, fw = feature_shape
    # Feature j of a stride-s "same" convolution is centred on input pixel j*s; with
    # align_corners=True grid coordinate -1/+1 is the centre of the first/last feature.
    gx = 2.0 * (cols / stride) / max(fw - 1, 1) - 1.0
    gy = 2.0 * (rows / stride) / max(fh - 1, 1) - 1.0
    return np.clip(np.stack([gx, gy], axis=1), -1.0, 1.0).astype(np.float32), found


def fit_v1_model(recording: Recording, *, seed: int, device: str = "cpu", max_epochs: int = 200,
                 batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.0, readout_l1: float = 0.0,
                 patience: int = 10, validation_fraction: float = 0.1, core_channels: int = 32,
                 core_layers: int = 3, kernel_size: int = 5, progress: bool = True,
                 core_stride: int = 2, hidden_kernel_size: int | None = 3,
                 init_mu_from_data: bool = True, min_delta: float = 1e-3) -> tuple[V1PredictiveModel, dict]:
    """Poisson loss on trial-averaged responses (NaN-aware: neurons/images without any recorded trial
    are masked out of the loss); train on the 'train' tier minus the last `validation_fraction` of it
    (validation split is deterministic); early stopping on mean validation correlation with
    `patience` epochs, restore the best weights. Everything seeded (torch.manual_seed + a torch.Generator
    for shuffling) so the same seed on CPU gives identical weights. Use tqdm for the epoch loop
    (disable when progress=False). Returns (model in eval mode, metrics dict).

    Loss per batch: ``sum m (r - y log r) / sum m + readout_l1 * mean_k sum_c |w_kc|`` (masked
    Poisson NLL, :func:`poisson_loss`, plus an optional L1 penalty on the readout weights).
    Optimiser: Adam(lr, weight_decay). Input statistics come from the fitting images only, and the
    readout biases start at the inverse output nonlinearity of each neuron's mean fitting response
    so training begins at the right rate scale. With ``init_mu_from_data`` each readout position
    starts where the neuron's response correlates best with local contrast energy: Adam moves mu
    by at most ~lr per step, so from the centre a neuron at the image border needs dozens of
    epochs just to reach its receptive field.

    Early stopping: the weights with the highest validation correlation are restored, but only an
    improvement of more than ``min_delta`` over the last reference resets the patience counter
    (neuralpredictors' ``tolerance``); otherwise a fit creeps on for dozens of epochs gaining
    < 0.001 correlation each, which the < 1 min budget cannot afford.

    The global RNG is seeded inside :func:`~neurobias.seeding.forked_global_rng`, so the caller's
    RNG state (CPU and GPU) is the same after the call as before it. The metrics dict holds the
    fitting history and the result of :func:`evaluate_v1_model` on the ``test`` tier.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if patience < 1 or max_epochs < 1 or batch_size < 1:
        raise ValueError("patience, max_epochs and batch_size must be >= 1")
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    train_idx = np.flatnonzero(recording.tier_mask("train"))
    n_val = max(2, int(round(validation_fraction * train_idx.size)))  # r needs >= 2 images
    if train_idx.size - n_val < 1:
        raise ValueError(f"the train tier has {train_idx.size} images: too few to hold out "
                         f"{n_val} for validation and still fit")
    fit_idx, val_idx = train_idx[:-n_val], train_idx[-n_val:]

    trial_avg = recording.trial_average()
    fit_images = recording.images[fit_idx].astype(np.float64)
    input_mean = float(fit_images.mean())
    input_std = float(fit_images.std()) or 1.0

    # The whole data set fits in memory (MBs), so keep it on the device and index batches.
    x_fit = normalise_images(recording.images[fit_idx], input_mean, input_std).to(device)
    x_val = normalise_images(recording.images[val_idx], input_mean, input_std).to(device)
    y_fit_np = trial_avg[fit_idx]
    m_fit = torch.as_tensor(~np.isnan(y_fit_np), dtype=torch.float32, device=device)
    y_fit = torch.as_tensor(np.nan_to_num(y_fit_np, nan=0.0), device=device)
    y_val_np = trial_avg[val_idx]

    model = V1PredictiveModel(recording.n_neurons, int(recording.images.shape[1]),
                              core_channels=core_channels, core_layers=core_layers,
                              kernel_size=kernel_size, seed=seed, input_mean=input_mean,
                              input_std=input_std, core_stride=core_stride,
                              hidden_kernel_size=hidden_kernel_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a neuron never recorded in the fit split
        mean_rate = np.nanmean(y_fit_np, axis=0)
    mean_rate = np.where(np.isfinite(mean_rate), mean_rate, np.nanmean(trial_avg[train_idx]))
    with torch.no_grad():
        model.readout.bias.copy_(torch.as_tensor(_inverse_output_nonlinearity(mean_rate), dtype=torch.float32))
        if init_mu_from_data:
            model.eval()
            feature_shape = tuple(model.core(x_fit[:1].cpu()).shape[-2:])
            mu, found = _contrast_positions(x_fit[:, 0].cpu().numpy().astype(np.float64), y_fit_np,
                                            feature_shape, core_stride)
            found_t = torch.as_tensor(found)
            model.readout.mu[found_t] = torch.as_tensor(mu)[found_t]
    model.to(device)

    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle_gen = torch.Generator().manual_seed(int(seed))
    model.readout.generator = torch.Generator(device=device).manual_seed(int(seed) + 2)

    history = {"train_loss": [], "val_correlation": []}
    best_score, best_epoch = -math.inf, 0
    reference_score, epochs_without_progress = -math.inf, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_fit = x_fit.shape[0]
    try:
        with forked_global_rng(device, int(seed)):
            bar = tqdm(range(1, max_epochs + 1), desc="fit V1 model", disable=not progress, leave=False)
            for epoch in bar:
                model.train()
                perm = torch.randperm(n_fit, generator=shuffle_gen).to(device)
                loss_sum, seen = 0.0, 0
                for start in range(0, n_fit, batch_size):
                    idx = perm[start:start + batch_size]
                    pred = model(x_fit[idx])
                    loss = poisson_loss(pred, y_fit[idx], m_fit[idx])
                    if readout_l1:
                        loss = loss + readout_l1 * model.readout.weight.abs().sum(1).mean()
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"non-finite training loss at epoch {epoch}; try a lower lr (now {lr})")
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    loss_sum += float(loss.detach()) * idx.numel()
                    seen += idx.numel()
                model.eval()
                val_pred = _predict_normalised(model, x_val, 256).cpu().numpy()
                r = pearson_per_neuron(val_pred, y_val_np)
                score = float(np.nanmean(r)) if np.isfinite(r).any() else -math.inf
                history["train_loss"].append(loss_sum / max(seen, 1))
                history["val_correlation"].append(score if np.isfinite(score) else None)
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if score > reference_score + min_delta:
                    reference_score, epochs_without_progress = score, 0
                else:
                    epochs_without_progress += 1
                bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", val_r=f"{score:.3f}",
                                best=f"{best_score:.3f}")
                if epochs_without_progress >= patience:
                    break
            bar.close()
    finally:
        # A Generator is no state to keep or checkpoint; later training falls back to the global RNG.
        model.readout.generator = None

    model.load_state_dict(best_state)
    model.eval()
    metrics = {
        "seed": int(seed),
        "device": str(device),
        "epochs_run": len(history["train_loss"]),
        "best_epoch": int(best_epoch),
        "stopped_early": len(history["train_loss"]) < max_epochs,
        "best_val_correlation": float(best_score) if np.isfinite(best_score) else None,
        "n_fit_images": int(fit_idx.size),
        "n_val_images": int(val_idx.size),
        "input_mean": input_mean,
        "input_std": input_std,
        "hyperparameters": dict(max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                                weight_decay=weight_decay, readout_l1=readout_l1, patience=patience,
                                min_delta=min_delta, validation_fraction=validation_fraction,
                                init_mu_from_data=init_mu_from_data),
        "model": model.init_kwargs(),
        "history": history,
    }
    metrics.update(evaluate_v1_model(model, recording, tier="test", device=device))
    metrics["fit_seconds"] = time.perf_counter() - t0
    return model, metrics


# ----------------------------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------------------------
def save_v1_model(model: V1PredictiveModel, path) -> None:
    """Write ``{"format", "init_kwargs", "state_dict"}`` atomically (tmp file + os.replace).

    Only tensors and plain Python types are stored, so :func:`load_v1_model` can use
    ``torch.load(weights_only=True)`` and never unpickles arbitrary objects.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "init_kwargs": model.init_kwargs(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_v1_model(path, device="cpu") -> V1PredictiveModel:
    """Rebuild a model saved by :func:`save_v1_model`, in eval mode, on ``device``."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    model = V1PredictiveModel(**payload["init_kwargs"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
