"""Regularisers: one interface (:class:`~.base.Regulariser`), several kinds, each declared below.

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
corruption-consistency pretraining of the core, then the rest retrained on clean images). Each is a
:class:`~neurobias.registry.RegulariserSpec` below: its own arm fields with their schema, what it
needs and which targets it takes, and its builder ``(arm, target, train_rows, context) ->
Regulariser`` (the ``build`` function of its module, imported only by a training job). A plugin
declares a new kind the same way (docs/extending.md). This module imports no torch: the Snakefile
reads the declarations while it builds the job graph.

A regulariser with a stimulus (neural) pass also carries ``neural_batchnorm`` (the arm's option,
set by :func:`build_regulariser`): ``update`` lets the stimulus batches update BatchNorm's running
statistics, as a plain training-mode forward pass does; ``freeze`` leaves them to the
classification batches (:class:`neurobias.train.EpochStep`). The default is ``update`` for every
built-in kind with a stimulus pass: it is what Safarani et al.'s trainer does (neural batches
through the shared core in ``train()``, ``freeze_bn`` off); Li et al.'s joint network runs stimulus
pairs through the same core in training (their Fig. 3), with nothing that sets BatchNorm aside;
Federer et al.'s CORnet-Z has no BatchNorm (LRN only), so for ``rsm`` the option matters only for
a network of ours that has it (VGG with ``batch_norm: true``).
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..registry import RegulariserSpec, declare

NEURAL_BATCHNORM = ("update", "freeze")

declare(RegulariserSpec, name="similarity", builder="neurobias.regularisers.similarity:build",
        doc="Li et al. 2019: the network's image similarities at `layers` pulled toward S_neural",
        fields={"alpha": {"type": "number", "minimum": 0, "description": "similarity: weight of the similarity loss"}},
        defaults={"stimulus_batch_size": 32, "neural_batchnorm": "update"},
        required=("target", "alpha", "layers"), accepts=("similarity",), layers_field="layers",
        neural_pass=True, stackable=True, penalty_term="similarity loss")

declare(RegulariserSpec, name="rsm", builder="neurobias.regularisers.rsm:build",
        doc="Federer et al. 2020: the RSM of one layer taught by a V1 teacher RSM",
        fields={
            "r": {"type": "number", "minimum": 0,
                  "description": "rsm: weight of the neural term (ratio weighting: the term is worth r x cross-entropy)"},
            "cost": {"enum": ["l1", "mse"], "default": "l1",
                     "description": "rsm: absolute (authors' code, the default) or squared difference of RSM entries"},
            "weighting": {"enum": ["ratio", "fixed"], "default": "ratio",
                          "description": "rsm: lambda = r*CE/cost each step (authors' code, the default) or a fixed weight r"},
            "alternate": {"type": "boolean", "default": True,
                          "description": "rsm: alternate cross-entropy-only steps with total-loss steps (authors' code; "
                                         "default true)"},
            "until_epoch": {"$ref": "#/$defs/positive_int", "description": "rsm: switch the neural term off from this epoch on"},
        },
        defaults={"stimulus_batch_size": 10, "neural_batchnorm": "update"},
        required=("target", "r", "layer"), accepts=("rsm",), layers_field="layer", neural_pass=True,
        stackable=True, study_settings=("rsm_metric",), penalty_term="RSM cost")

declare(RegulariserSpec, name="mtl", builder="neurobias.regularisers.mtl:build",
        doc="Safarani et al. 2021: a Gaussian-readout V1 head on the shared core, uncertainty-weighted",
        fields={
            "batch_ratio": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                            "description": "mtl: neural batches per classification batch (fractions: one every 1/ratio "
                                           "steps); one optimiser step per classification batch (default 1)"},
            "target_scale": {"enum": ["raw", "sd"], "default": "raw",
                             "description": "mtl: units of the response targets in the MSE. raw (default): the responses "
                                            "as they are, as the authors trained (their neural loaders normalise images, "
                                            "never responses); sd: each neuron divided by its SD over the training "
                                            "images, so every neuron weighs alike"},
        },
        defaults={"stimulus_batch_size": 64, "neural_batchnorm": "update"},
        required=("target", "layer"), accepts=("responses",), layers_field="layer", neural_pass=True,
        stackable=True, needs_tap_channels=True, needs_responses=True, penalty_term="MTL neural loss")

declare(RegulariserSpec, name="oracle", builder="neurobias.regularisers.oracle:build",
        doc="Safarani et al. 2021's oracle: corruption-consistency pretraining of the core, then the rest retrained",
        fields={"oracle": {
            "type": "object", "additionalProperties": False, "required": ["pretrain_epochs"],
            "description": "oracle: first stage on clean + corrupted images with a consistency loss at `layer`, then the "
                           "core frozen and the rest retrained for training.epochs",
            "properties": {
                "pretrain_epochs": {"$ref": "#/$defs/positive_int"},
                "consistency_weight": {"type": "number", "minimum": 0, "default": 1.0},
                "consistency": {"enum": ["cosine", "euclidean", "mse"], "default": "cosine",
                                "description": "distance between the two corrupted versions' flattened features, "
                                               "averaged over images: cosine (1 - cos; the default of the authors' "
                                               "RepresentationMatching code), euclidean (the L2 distance, the paper's "
                                               "description; the safarani2021 preset) or mse (mean squared difference "
                                               "over units)"},
                "corruptions": {"type": "array", "minItems": 1, "uniqueItems": True,
                                "items": {"$ref": "#/$defs/corruption"}},
                "severities": {"type": "array", "minItems": 1, "uniqueItems": True,
                               "items": {"type": "integer", "minimum": 1, "maximum": 5}, "default": [1, 2, 3, 4, 5]},
                "clean_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.5},
                "groups": {"$ref": "#/$defs/positive_int", "default": 4,
                           "description": "corruptions drawn per batch (one per group of images)"},
            }}},
        required=("layer", "oracle"), layers_field="layer", stackable=True, splits_core=True,
        penalty_term="oracle consistency loss")


def regularised_layers(arm: dict) -> tuple[str, ...]:
    """The layers an arm's regulariser reads (empty for none)."""
    from ..registry import REGULARISERS
    kind = arm.get("regulariser") or "none"
    if kind == "none":
        return ()
    field = REGULARISERS[kind].layers_field
    if field is None or field not in arm:
        return ()
    return tuple(arm[field]) if field == "layers" else (arm[field],)


# torch-backed names, imported on first use (PEP 562), so that declaring the kinds stays light
_LAZY = {"Regulariser": ".base", "MTLRegulariser": ".mtl", "RSMRegulariser": ".rsm",
         "SimilarityRegulariser": ".similarity", "OracleTraining": ".oracle", "build_regulariser": ".build"}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["NEURAL_BATCHNORM", "MTLRegulariser", "OracleTraining", "Regulariser", "RSMRegulariser",
           "SimilarityRegulariser", "build_regulariser", "regularised_layers"]
