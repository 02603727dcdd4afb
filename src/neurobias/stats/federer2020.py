"""Federer et al. 2020: learning-curve statistics.

Federer, Xu, Fyshe and Zylberberg, "Improved object recognition using neural
networks trained to mimic the brain's statistical properties" (Neural Networks,
2020): networks trained with a representational-similarity (RSM) regulariser
are compared by test accuracy, generalisation error and within-superclass
errors over epochs and fractions of corrupted training labels.

Contents
--------
:data:`LEARNING_CURVE_METRICS` -- the ``history.csv`` columns analysed.
:data:`LEARNING_CURVE_BETTER` -- what "better" means for each of them.
:func:`learning_curve_records` -- tidy rows from one model's training history.
:func:`final_epoch_tests` -- each arm vs the r = 0 arm on the same labels at the
    final epoch (one-tailed, paired over seeds by default, p adjusted over the
    table), which also gives Federer's significance marks.  The curves
    themselves stay descriptive (mean +/- SEM per epoch from
    :func:`neurobias.stats.general.summarise`): testing every epoch would multiply
    the comparisons by the number of epochs and ask a question nobody asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .general import GROUP_KEYS, TIDY_COLUMNS, _require_columns, compare_to_baseline

__all__ = ["LEARNING_CURVE_METRICS", "LEARNING_CURVE_BETTER", "learning_curve_records", "final_epoch_tests"]


# --------------------------------------------------------------------------- #
# Federer et al. 2020: learning curves
# --------------------------------------------------------------------------- #
#: history.csv columns the learning-curve analysis reads (when present).
LEARNING_CURVE_METRICS: tuple[str, ...] = (
    "test_accuracy",
    "generalisation_error",
    "within_superclass_error",
)

#: What "better" means for each learning-curve metric (the direction of the one-tailed test).
#:
#: * ``test_accuracy``: higher.
#: * ``generalisation_error`` = training loss - test loss (``neurobias.train``; the training loss
#:   is measured in eval mode on training images with the labels the model was trained on,
#:   corrupted ones included): **higher**.  Memorising the training set drives the training loss
#:   below the test loss, so overfitting makes the value more negative.  Federer et al. present
#:   the neural teacher as a regulariser that reduces overfitting and makes networks robust to
#:   corrupted labels; a network that refuses to memorise corrupted labels keeps a training loss
#:   above its test loss, i.e. a *positive* value.  So the better network has the larger
#:   (train - test) value, and we test ``alternative="greater"``.  Testing a smaller absolute gap
#:   instead would call memorising the corrupted labels (train loss -> 0) an improvement.
#:   Caveat: a network that learns nothing also has train loss = test loss (value ~ 0), so read
#:   this metric next to the test accuracy.
#: * ``within_superclass_error``: the share of test errors whose predicted class lies in the true
#:   CIFAR-100 superclass -- "more reasonable errors" in Federer et al.'s words: higher.
LEARNING_CURVE_BETTER: dict[str, str] = {
    "test_accuracy": "higher",
    "generalisation_error": "higher",
    "within_superclass_error": "higher",
}


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
    training labels, so :func:`final_epoch_tests` tests each arm against the
    r = 0 arm trained on the same labels.  Metrics missing from the history (e.g.
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


def final_epoch_tests(
    records: pd.DataFrame,
    *,
    baseline: str,
    test: str = "paired",
    correction: str = "holm",
) -> pd.DataFrame:
    """Each arm vs ``baseline`` at the final epoch, per fraction of corrupted labels and metric.

    ``records`` are :func:`learning_curve_records` rows of one study (several models).  The final
    epoch is the largest ``epoch`` in ``records`` (every arm trains for ``training.epochs``); a run
    whose history stops earlier is missing from the test, which ``n``/``n_pairs`` show.  Within
    each (study, level, metric) every other arm is compared with ``baseline`` trained on the same
    labels by :func:`~neurobias.stats.general.compare_to_baseline` with ``by=(*GROUP_KEYS,
    "epoch")``, one-tailed in the direction of :data:`LEARNING_CURVE_BETTER`, ``test`` paired over
    seeds (or Welch), and ``correction`` applied over the whole returned table (every level x
    metric x arm against the baseline is one family).  Columns: those of ``compare_to_baseline``,
    with ``epoch`` after ``metric``.
    """
    _require_columns(records, ("epoch",), "final_epoch_tests")
    final = records[records["epoch"] == records["epoch"].max()]
    return compare_to_baseline(final, baseline=baseline, by=(*GROUP_KEYS, "epoch"),
                               better=LEARNING_CURVE_BETTER, test=test, correction=correction)
