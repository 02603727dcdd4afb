"""Building an arm's regulariser from its kind's declaration (:mod:`neurobias.regularisers`)."""

from __future__ import annotations

from ..config import with_defaults
from ..registry import regularisers
from . import NEURAL_BATCHNORM
from .base import Regulariser


def build_regulariser(arm: dict, target, train_rows, context: dict | None = None) -> Regulariser | None:
    """The regulariser an arm asks for (None for ``regulariser: none``), built by its kind's
    builder. ``context`` carries study-level settings a kind reads (its ``study_settings``, e.g.
    ``rsm_metric``) and what the training run knows (``seed``, ``tap_channels``, ``responses``)."""
    arm = with_defaults(arm, "arm")  # the schema's defaults, also for an arm written by hand
    kind = arm["regulariser"]
    if kind == "none":
        return None
    spec = regularisers()[kind]
    regulariser = spec.load()(arm, target, train_rows, context or {})
    if spec.neural_pass:
        if arm["neural_batchnorm"] not in NEURAL_BATCHNORM:
            raise ValueError(f"arms: neural_batchnorm must be one of {NEURAL_BATCHNORM}, "
                             f"got {arm['neural_batchnorm']!r}")
        regulariser.neural_batchnorm = arm["neural_batchnorm"]
    return regulariser
