"""Safarani et al. 2021's multi-task learning: a V1 head on the classifier's shared core.

The network up to ``layer`` (VGG-19's ``conv3_1``: ``vgg19_bn.features[:17]`` in the authors'
code, sinzlab/neural_cotraining) is shared; a Gaussian readout
(:class:`neurobias.neural.v1_model.GaussianReadout`: per neuron a position and a width per axis on
the layer's feature map, a linear map over channels and a bias) followed by ``elu(x - 1) + 1`` (the
code's ``v1_elu_offset = -1``) predicts V1 responses to the recording's stimulus images. As in
that code: positions start uniform in [-0.3, 0.3]^2, widths uniform in [0, 0.6] (each axis its
own), channel weights at 1/C, and each neuron's bias at its mean training target; no L1 penalty
on the readout
(``scale_loss = False`` for MTL). Its targets are responses per stimulus image
[M, K]: the single-task V1 model's predictions (``responses_model``: the "denoised" targets the
authors used), the same with the image identities shuffled (``responses_shuffle``), or a readout
of a frozen oracle core (``responses_oracle``).

The readout is that code's ``mlutils.layers.legacy.Gaussian2d`` (``MultipleGaussian2d`` in
neural_cotraining's ``models/mtl_vgg.py``), and trains as it does: a width per axis
(``gauss_type="uncorrelated"``), and before each sampled position ``mu`` is clamped into [-1, 1]
and ``sigma`` to >= 0, both in place (``tests/test_readout_parity.py`` pins this against their
code on fixed draws).

Units of the targets (``target_scale``): ``raw`` (the default) trains on the responses as they
are, as the authors did (their neural loaders, nnvision's ``monkey_static_loader``, normalise the
images, never the responses); ``sd`` divides each neuron's responses by its standard deviation
over the training images (not centred: rates stay positive, as ``elu(x - 1) + 1`` requires), so
every neuron weighs alike in the MSE. Pearson r, the held-out measure, is the same in either unit.

Loss (Kendall et al. 2018's homoscedastic uncertainty weighting, as in the Sinz lab's
``neural_cotraining`` trainer), with log-variances s_c and s_n trained with the network and
initialised at 0 and trained by the same SGD optimiser as the network (weight decay included, as
in that code)::

    L = exp(-s_c) * CE + 1/2 s_c + 1/2 exp(-s_n) * MSE + 1/2 s_n

MSE is summed over the step's neural batches: ``batch_ratio`` neural batches per classification
batch (step t does floor((t+1) r) - floor(t r) of them, so fractional ratios spread evenly), and
one optimiser step per classification batch, as the trainer's gradient accumulation does. A step
without a neural batch uses exp(-s_c) * CE + 1/2 s_c alone.

The stimulus forward pass stops at ``layer`` (the classifier is not run on stimulus images). It
runs in training mode and, by default (``neural_batchnorm: update``), updates the shared core's
BatchNorm running statistics as the authors' trainer does: its neural batches pass the shared
``v1_block`` with the whole model in ``train()`` and ``freeze_bn`` left at its default
(``last_layer: -1``, nothing frozen); ``freeze`` leaves them to the classification batches (see
:class:`neurobias.train.EpochStep`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..neural.v1_model import GaussianReadout, pearson_per_neuron
from .base import Regulariser

TARGET_SCALES = ("raw", "sd")


def neural_batches(step: int, ratio: float) -> int:
    """Neural batches at classification step ``step`` so that, over any run of steps, their number
    is the ratio times the steps (rounded down): floor((t+1) r) - floor(t r)."""
    return math.floor((step + 1) * ratio + 1e-9) - math.floor(step * ratio + 1e-9)


class MTLRegulariser(Regulariser):
    weight_decay = True  # its parameters join the network's optimiser group

    def __init__(self, target: np.ndarray, train_rows: np.ndarray, layer: str, in_channels: int, *,
                 batch_ratio: float = 1.0, stimulus_batch_size: int = 64, init_mu_range: float = 0.3,
                 init_sigma_range: float = 0.6, seed: int = 0, target_scale: str = "raw"):
        super().__init__(weight=1.0)
        target = np.asarray(target, dtype=np.float32)
        if target.ndim != 2:
            raise ValueError(f"mtl regulariser: target must be responses [images, neurons], got shape {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError("mtl regulariser: the response targets contain NaN or inf (use predicted responses)")
        if batch_ratio <= 0:
            raise ValueError(f"mtl regulariser: batch_ratio must be positive, got {batch_ratio}")
        if target_scale not in TARGET_SCALES:
            raise ValueError(f"mtl regulariser: target_scale must be one of {TARGET_SCALES}, got {target_scale!r}")
        self.taps = (layer,)
        self.batch_ratio = float(batch_ratio)
        # target = responses / target_scale: 1 for raw responses (the authors' MSE on the predicted
        # responses as they are), each neuron's SD over the training images for ``sd``
        self.target_scale_mode = target_scale
        if target_scale == "sd":
            scale = target[np.asarray(train_rows)].std(0)
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        else:
            scale = np.ones(target.shape[1], dtype=np.float32)
        target = target / scale
        self.register_buffer("target", torch.as_tensor(target), persistent=False)
        self.register_buffer("target_scale", torch.as_tensor(scale), persistent=False)
        self.register_buffer("train_rows", torch.as_tensor(train_rows, dtype=torch.long), persistent=False)
        self.batch_size = min(int(stimulus_batch_size), len(train_rows))
        # Gaussian2d's sampling: one width per axis, mu clamped to [-1, 1] and sigma to >= 0 in place
        self.readout = GaussianReadout(in_channels, target.shape[1], init_mu_range=init_mu_range, seed=seed,
                                       gauss_type="uncorrelated", clamp_mu=True, clamp_sigma=True)
        with torch.no_grad():
            g = torch.Generator().manual_seed(int(seed) + 1)
            self.readout.sigma.copy_(torch.rand(self.readout.sigma.shape, generator=g) * init_sigma_range)
            self.readout.weight.fill_(1.0 / in_channels)
            self.readout.bias.copy_(torch.as_tensor(target[np.asarray(train_rows)].mean(0)))
        # Kendall et al.'s log-variances: s = log sigma^2, one per task
        self.log_var_classification = nn.Parameter(torch.zeros(()))
        self.log_var_neural = nn.Parameter(torch.zeros(()))

    def stimulus_batches(self, epoch: int, step: int) -> int:
        return neural_batches(step, self.batch_ratio)

    def stimulus_batch(self, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randperm(len(self.train_rows), generator=generator)[: self.batch_size]
        return self.train_rows[pick.to(self.train_rows.device)]

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted responses [B, K] from the tap's feature map."""
        return F.elu(self.readout(features.float()) - 1.0) + 1.0

    def loss(self, features: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.predict(features[self.taps[0]]), self.target[rows])

    def total_loss(self, ce: torch.Tensor, penalty: torch.Tensor | None) -> torch.Tensor:
        s_c, s_n = self.log_var_classification, self.log_var_neural
        loss = torch.exp(-s_c) * ce + 0.5 * s_c
        if penalty is not None:
            loss = loss + 0.5 * torch.exp(-s_n) * penalty + 0.5 * s_n
        return loss

    def log(self) -> dict[str, float]:
        return {"log_var_classification": float(self.log_var_classification.detach()),
                "log_var_neural": float(self.log_var_neural.detach())}

    @torch.no_grad()
    def heldout_prediction(self, model, stimuli: torch.Tensor, rows: torch.Tensor,
                           responses: np.ndarray | None, batch_size: int = 256) -> dict[str, float]:
        """Neural prediction performance on held-out stimulus images: mean over neurons of the
        Pearson r between the head's predictions and (a) the targets it was trained on, (b) the
        recorded trial-averaged responses (``responses`` [M, K], NaN where not recorded). The
        predictions are in the targets' units (raw, or per-neuron SD units with ``target_scale:
        sd``); a per-neuron Pearson r is the same in either, so (b) needs no rescaling."""
        was = model.training, self.training
        model.eval()
        self.eval()
        try:
            preds = []
            for i in range(0, len(rows), batch_size):
                _, feats = model.forward_taps(stimuli[rows[i:i + batch_size]], self.taps, features_only=True)
                preds.append(self.predict(feats[self.taps[0]]).float().cpu())
            pred = torch.cat(preds).numpy()
        finally:
            model.train(was[0])
            self.train(was[1])
        idx = rows.cpu().numpy()
        out = {"neural_r_target": float(np.nanmean(pearson_per_neuron(pred, self.target.cpu().numpy()[idx])))}
        if responses is not None:
            with np.errstate(all="ignore"):
                r = pearson_per_neuron(pred, np.asarray(responses)[idx])
            out["neural_r_data"] = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        return out


def fit_oracle_targets(model, stimuli: torch.Tensor, tiers: np.ndarray, responses: np.ndarray, layer: str, *,
                       seed: int = 0, epochs: int = 100, lr: float = 0.01, batch_size: int = 64,
                       device="cpu", target_scale: str = "raw") -> tuple[np.ndarray, dict]:
    """MTL-oracle targets: a Gaussian readout (the MTL head) fitted on the frozen core of a trained
    network (the oracle) to ``responses`` [M, K] on the stimulus images of the ``train`` tier
    (Adam, MSE, seeded); its predictions for every stimulus image become the targets, in the
    responses' own units whatever ``target_scale`` the fit used.

    Returns (targets [M, K] float32, metrics: held-out mean Pearson r on the ``test`` tier)."""
    device = torch.device(device)
    model = model.to(device).eval()
    with torch.no_grad():
        feats = torch.cat([model.forward_taps(stimuli[i:i + 256].to(device), (layer,), features_only=True)[1][layer].float()
                           for i in range(0, len(stimuli), 256)])
    train_rows = np.flatnonzero(tiers == "train")
    test_rows = np.flatnonzero(tiers == "test")
    head = MTLRegulariser(responses, train_rows, layer, feats.shape[1], seed=seed, target_scale=target_scale).to(device)
    params = list(head.readout.parameters())
    optimiser = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    head.readout.generator = None
    torch.manual_seed(seed)
    target = head.target
    head.train()
    for _ in range(epochs):
        order = torch.as_tensor(train_rows)[torch.randperm(len(train_rows), generator=g)]
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size].to(device)
            loss = F.mse_loss(head.predict(feats[rows]), target[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    head.eval()
    with torch.no_grad():  # back in the responses' own units
        pred = (head.predict(feats) * head.target_scale).cpu().numpy().astype(np.float32)
    r = pearson_per_neuron(pred[test_rows], np.asarray(responses)[test_rows])
    return pred, {"heldout_r": float(np.nanmean(r)), "epochs": epochs, "layer": layer}


def build(arm: dict, target, train_rows, context: dict) -> MTLRegulariser:
    """The ``mtl`` kind's builder (declared in :mod:`neurobias.regularisers`); ``context`` holds the
    run's ``seed`` and the channels of the network's taps."""
    return MTLRegulariser(target, train_rows, arm["layer"], context["tap_channels"][arm["layer"]],
                          batch_ratio=float(arm["batch_ratio"]), stimulus_batch_size=arm["stimulus_batch_size"],
                          seed=int(context["seed"]), target_scale=arm["target_scale"])
