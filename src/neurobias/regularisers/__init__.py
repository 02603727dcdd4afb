"""Regularisers: one interface (:class:`~.base.Regulariser`), several kinds.

A regulariser is an ``nn.Module`` (its trainable parameters, like Li's layer weights, are trained
with the network and saved in its checkpoint) with

    taps: tuple[str, ...]                        # layers it reads
    active(epoch, step) -> bool                  # whether this step adds the penalty
    stimulus_batches(epoch, step) -> int         # how many stimulus batches this step sums over
    stimulus_batch(generator) -> index tensor    # which stimulus images one batch uses
    loss(stimulus_features, rows) -> scalar      # the penalty, given the taps' activations
    total_loss(ce, penalty | None) -> scalar     # how the penalty joins the cross-entropy
    log() -> dict[str, float]                    # values worth a column in history.csv

Kinds: ``similarity`` (Li et al. 2019), ``rsm`` (Federer et al. 2020), ``mtl`` (Safarani et al.
2021: a V1 readout on the shared core, uncertainty-weighted), ``oracle`` (Safarani et al.'s oracle:
corruption-consistency pretraining of the core, then the rest retrained on clean images).
Extension point: add a builder ``(arm, target, train_rows, context) -> Regulariser`` to
:data:`REGULARISERS` under the name the config's ``arms.<arm>.regulariser`` uses. ``context`` holds
study-level settings (``rsm_metric``) and what the training run knows (``seed``, ``tap_channels``:
channels of every tap of the network being trained).

A regulariser with a stimulus (neural) pass also carries ``neural_batchnorm`` (the arm's option,
set by :func:`build_regulariser`): ``update`` lets the stimulus batches update BatchNorm's running
statistics, as a plain training-mode forward pass does; ``freeze`` leaves them to the
classification batches (:class:`neurobias.train.EpochStep`). The schema's default is ``update``
for every kind with a stimulus pass: it is what Safarani et al.'s trainer does (neural batches
through the shared core in ``train()``, ``freeze_bn`` off); Li et al.'s joint network runs stimulus
pairs through the same core in training (their Fig. 3), with nothing that sets BatchNorm aside;
Federer et al.'s CORnet-Z has no BatchNorm (LRN only), so for ``rsm`` the option matters only for
a network of ours that has it (VGG with ``batch_norm: true``).
"""

from __future__ import annotations

from ..config import schema_default, with_defaults
from .base import Regulariser
from .mtl import MTLRegulariser
from .rsm import RSMRegulariser
from .similarity import SimilarityRegulariser


NEURAL_BATCHNORM = ("update", "freeze")


def _similarity(arm: dict, target, train_rows, context: dict) -> SimilarityRegulariser:
    return SimilarityRegulariser(target, train_rows, tuple(arm["layers"]), arm["stimulus_batch_size"],
                                 alpha=float(arm["alpha"]))


def _rsm(arm: dict, target, train_rows, context: dict) -> RSMRegulariser:
    return RSMRegulariser(target, train_rows, arm["layer"], float(arm["r"]),
                          metric=context.get("rsm_metric") or schema_default("study", "similarity", "rsm_metric"), cost=arm["cost"],
                          weighting=arm["weighting"], alternate=arm["alternate"],
                          until_epoch=arm.get("until_epoch"),
                          stimulus_batch_size=arm["stimulus_batch_size"])


def _mtl(arm: dict, target, train_rows, context: dict) -> MTLRegulariser:
    return MTLRegulariser(target, train_rows, arm["layer"], context["tap_channels"][arm["layer"]],
                          batch_ratio=float(arm["batch_ratio"]), stimulus_batch_size=arm["stimulus_batch_size"],
                          seed=int(context["seed"]), target_scale=arm["target_scale"])


def _oracle(arm: dict, target, train_rows, context: dict):
    from .oracle import OracleTraining  # imports the corruptions only where needed
    spec = arm["oracle"]
    return OracleTraining(arm["layer"], pretrain_epochs=spec["pretrain_epochs"],
                          consistency_weight=spec["consistency_weight"],
                          **{k: spec[k] for k in ("consistency", "corruptions", "severities", "clean_fraction", "groups")
                             if k in spec})


REGULARISERS = {"similarity": _similarity, "rsm": _rsm, "mtl": _mtl, "oracle": _oracle}
NEURAL_PASS = ("similarity", "rsm", "mtl")  # kinds with a stimulus forward pass (neural_batchnorm applies)


def build_regulariser(arm: dict, target, train_rows, context: dict | None = None) -> Regulariser | None:
    """The regulariser an arm asks for (None for ``regulariser: none``). ``context`` carries
    study-level settings a kind needs (e.g. ``rsm_metric``)."""
    arm = with_defaults(arm, "arm")  # the schema's defaults, also for an arm written by hand
    kind = arm["regulariser"]
    if kind == "none":
        return None
    if kind not in REGULARISERS:
        raise ValueError(f"arms: unknown regulariser {kind!r}; known: none, {', '.join(REGULARISERS)}")
    regulariser = REGULARISERS[kind](arm, target, train_rows, context or {})
    if kind in NEURAL_PASS:
        if arm["neural_batchnorm"] not in NEURAL_BATCHNORM:
            raise ValueError(f"arms: neural_batchnorm must be one of {NEURAL_BATCHNORM}, "
                             f"got {arm['neural_batchnorm']!r}")
        regulariser.neural_batchnorm = arm["neural_batchnorm"]
    return regulariser


def regularised_layers(arm: dict) -> tuple[str, ...]:
    """The layers an arm's regulariser reads (empty for none)."""
    if arm.get("regulariser") == "similarity":
        return tuple(arm["layers"])
    if arm.get("regulariser") in ("rsm", "mtl", "oracle"):
        return (arm["layer"],)
    return ()


__all__ = ["NEURAL_BATCHNORM", "NEURAL_PASS", "REGULARISERS", "MTLRegulariser", "Regulariser", "RSMRegulariser",
           "SimilarityRegulariser", "build_regulariser", "regularised_layers"]
