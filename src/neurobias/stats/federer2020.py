"""Federer et al. 2020: learning-curve statistics.

Federer, Xu, Fyshe and Zylberberg, "Improved object recognition using neural
networks trained to mimic the brain's statistical properties" (Neural Networks,
2020): networks trained with a representational-similarity (RSM) regulariser
are compared by test accuracy, generalisation error and within-superclass
errors over epochs and fractions of corrupted training labels.

Contents
--------
:data:`LEARNING_CURVE_METRICS` -- the ``history.csv`` columns analysed.
:func:`learning_curve_records` -- tidy rows from one model's training history.
    They are tested per epoch against the r = 0 arm with
    :func:`neurobias.stats.general.compare_to_baseline` and
    ``by=(*GROUP_KEYS, "epoch")``, which also gives Federer's significance marks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .general import TIDY_COLUMNS, _require_columns

__all__ = ["LEARNING_CURVE_METRICS", "learning_curve_records"]


# --------------------------------------------------------------------------- #
# Federer et al. 2020: learning curves
# --------------------------------------------------------------------------- #
#: history.csv columns the learning-curve analysis reads (when present).
LEARNING_CURVE_METRICS: tuple[str, ...] = (
    "test_accuracy",
    "generalisation_error",
    "within_superclass_error",
)


def learning_curve_records(
    history: pd.DataFrame,
    *,
    study: str,
    arm: str,
    seed: int,
    label_noise: float = 0.0,
    r: float = 0.0,
    metrics: Sequence[str] = LEARNING_CURVE_METRICS,
) -> pd.DataFrame:
    """Tidy rows from one model's ``history.csv``: one per (epoch, metric).

    ``condition`` is ``"label_noise"`` and ``level`` the fraction of corrupted
    training labels, so :func:`compare_to_baseline` with
    ``by=(*GROUP_KEYS, "epoch")`` tests each arm against the r = 0 arm trained
    on the same labels.  Metrics missing from the history (e.g.
    ``within_superclass_error`` on a dataset without superclasses) are skipped.
    """
    _require_columns(history, ("epoch",), "learning_curve_records")
    rows = []
    for metric in metrics:
        if metric not in history.columns:
            continue
        for epoch, value in zip(history["epoch"], history[metric]):
            rows.append({"study": study, "arm": arm, "seed": int(seed), "evaluation": "learning_curves",
                         "condition": "label_noise", "level": float(label_noise), "metric": metric,
                         "value": float(value), "epoch": int(epoch), "r": float(r)})
    return pd.DataFrame(rows, columns=[*TIDY_COLUMNS, "epoch", "r"])
