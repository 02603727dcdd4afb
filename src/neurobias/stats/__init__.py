"""Statistics on tidy evaluation results.

Every function is pure: it takes a tidy :class:`pandas.DataFrame` (one row per
observation, columns ``study, arm, seed, evaluation, condition, level, metric,
value``; several result CSVs may have been concatenated) and returns a new
DataFrame.  Nothing reads or writes files, nothing mutates its input.

Modules
-------
:mod:`~neurobias.stats.general`
    What any study uses: :func:`summarise` (mean, SEM, SD, n over seeds),
    :func:`compare_to_baseline` (one-tailed paired or Welch t-tests against a
    baseline arm in the direction that means better, p adjusted per baseline by
    :func:`adjust_p`) with :func:`significance_mark`, :func:`welch_df` and
    :func:`describe_tests`, :func:`correlate` (Pearson r across models), the
    column conventions :data:`TIDY_COLUMNS` and :data:`GROUP_KEYS`, what
    "better" means per metric (:data:`METRIC_BETTER`), and the conventions for
    new functions.
:mod:`~neurobias.stats.federer2020`
    Federer et al. 2020, "Improved object recognition using neural networks
    trained to mimic the brain's statistical properties":
    :func:`learning_curve_records`, :func:`final_epoch_tests`,
    :data:`LEARNING_CURVE_BETTER`.
:mod:`~neurobias.stats.safarani2021`
    Safarani et al. 2021, "Towards robust vision by multi-task learning on
    monkey visual cortex": :func:`robustness_scores`,
    :func:`robustness_scores_per_seed`, :func:`bootstrap_robustness`,
    :func:`model_robustness_table`, :func:`two_factor_regression`.
:mod:`~neurobias.stats.brain_likeness`
    Dapello et al. 2020's brain-likeness vs robustness across models:
    :func:`model_table` (one row per model), :func:`model_correlations`,
    :data:`ROBUSTNESS_COLUMNS`.

Every public name is re-exported here, so ``from neurobias.stats import X``
keeps working; helpers that start with ``_`` live in their modules only.
"""

from __future__ import annotations

from . import brain_likeness, federer2020, general, safarani2021
from .brain_likeness import ROBUSTNESS_COLUMNS, model_correlations, model_table
from .federer2020 import LEARNING_CURVE_BETTER, LEARNING_CURVE_METRICS, final_epoch_tests, learning_curve_records
from .general import (
    BETTER_ALTERNATIVE,
    BOOKKEEPING_METRICS,
    CORRECTIONS,
    GROUP_KEYS,
    METRIC_BETTER,
    SIGNIFICANCE_LEVELS,
    TESTS,
    TIDY_COLUMNS,
    adjust_p,
    compare_to_baseline,
    correlate,
    describe_tests,
    significance_mark,
    summarise,
    welch_df,
)
from .safarani2021 import (
    ALL_CATEGORIES,
    SAFARANI_NON_CORRUPTIONS,
    bootstrap_robustness,
    model_robustness_table,
    robustness_scores,
    robustness_scores_per_seed,
    two_factor_regression,
)

__all__ = [*general.__all__, *federer2020.__all__, *safarani2021.__all__, *brain_likeness.__all__]
