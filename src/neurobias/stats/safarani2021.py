"""Safarani et al. 2021: robustness to Tiny-ImageNet-C style corruptions.

Safarani et al., "Towards robust vision by multi-task learning on monkey visual
cortex" (NeurIPS 2021): each network's accuracy under common corruptions is
scored relative to a baseline network, and a regression asks whether neural
prediction performance explains robustness beyond clean accuracy.

Contents
--------
:func:`robustness_scores` -- mean over corruptions of the arm's accuracy (severity
    and seed mean) over the baseline's, overall and per corruption category;
:func:`robustness_scores_per_seed` -- the same per model (seed).
:func:`bootstrap_robustness` -- percentile intervals of the score from per-image
    correctness (paired image resample plus seed resample, vectorised).
:func:`model_robustness_table` -- one row per model: clean accuracy, neural
    prediction r, robustness, batch-ratio pool.
:func:`two_factor_regression` -- OLS of robustness on neural prediction and clean
    accuracy per pool (statsmodels), with standardised coefficients.

These take the corruption categories as an argument (``{category: (corruption,
...)}``); the tidy rows may carry an extra ``category`` column.
:data:`SAFARANI_NON_CORRUPTIONS` names the conditions of the ``corruptions``
evaluation that are not corruptions, :data:`ALL_CATEGORIES` the category that
pools every corruption.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .general import _as_tuple, _groupby, _key_dict, _require_columns

__all__ = [
    "SAFARANI_NON_CORRUPTIONS",
    "ALL_CATEGORIES",
    "robustness_scores",
    "robustness_scores_per_seed",
    "bootstrap_robustness",
    "model_robustness_table",
    "two_factor_regression",
]


# --------------------------------------------------------------------------- #
# Safarani et al. 2021: robustness score on Tiny-ImageNet-C style corruptions
# --------------------------------------------------------------------------- #
#: Conditions of the ``corruptions`` evaluation that are not corruptions.
SAFARANI_NON_CORRUPTIONS: tuple[str, ...] = ("clean", "neural")
#: Name of the category that pools every corruption.
ALL_CATEGORIES = "all"

_SCORE_COLUMNS: tuple[str, ...] = ("study", "arm", "category", "score", "n_seeds", "n_corruptions")
_SEED_SCORE_COLUMNS: tuple[str, ...] = ("study", "arm", "seed", "category", "score", "n_corruptions")
_BOOTSTRAP_COLUMNS: tuple[str, ...] = (
    "study", "arm", "category", "score", "ci_low", "ci_high", "n_seeds", "n_corruptions", "n_images",
    "repetitions", "level",
)
_MODEL_TABLE_COLUMNS: tuple[str, ...] = (
    "study", "arm", "seed", "base_arm", "batch_ratio", "pool", "clean_accuracy", "neural_prediction_r",
    "robustness",
)
_REGRESSION_COLUMNS: tuple[str, ...] = (
    "term", "coef", "se", "t", "p", "ci_low", "ci_high", "beta", "x_mean", "r2", "adj_r2", "n",
    "df_resid", "f", "f_p", "note",
)


def _category_map(categories, what: str) -> dict[str, str]:
    """``{corruption: category}`` from ``{category: (corruption, ...)}``, validated."""
    if not isinstance(categories, dict) or not categories:
        raise ValueError(f"{what}: categories must be a non-empty dict {{category: (corruption, ...)}}")
    out: dict[str, str] = {}
    for category, corruptions in categories.items():
        if category in (ALL_CATEGORIES, *SAFARANI_NON_CORRUPTIONS):
            raise ValueError(f"{what}: {category!r} is reserved and cannot name a corruption category")
        if isinstance(corruptions, str):
            raise ValueError(f"{what}: category {category!r} must list corruptions, got the string "
                             f"{corruptions!r}")
        for corruption in corruptions:
            if corruption in out:
                raise ValueError(f"{what}: corruption {corruption!r} is in categories {out[corruption]!r} "
                                 f"and {category!r}")
            if corruption in SAFARANI_NON_CORRUPTIONS:
                raise ValueError(f"{what}: {corruption!r} is not a corruption")
            out[corruption] = category
    return out


def _category_order(categories) -> list[str]:
    return [ALL_CATEGORIES, *categories]


def _seed_corruption_accuracy(tidy: pd.DataFrame, categories, what: str) -> pd.DataFrame:
    """Accuracy per (study, arm, seed, corruption), averaged over severities.

    Columns ``study, arm, seed, condition, category, accuracy``.
    """
    _require_columns(tidy, ("study", "arm", "seed", "condition", "level", "metric", "value"), what)
    cmap = _category_map(categories, what)
    f = tidy
    if "evaluation" in f.columns:
        f = f[f["evaluation"] == "corruptions"]
    f = f[(f["metric"] == "accuracy") & ~f["condition"].isin(SAFARANI_NON_CORRUPTIONS)]
    unknown = sorted(set(map(str, f["condition"].unique())) - set(cmap))
    if unknown:
        raise ValueError(f"{what}: conditions {unknown} are in none of the categories "
                         f"{sorted(categories)}; filter them out or add them to a category")
    if "category" in f.columns:
        wrong = f["category"].astype(str) != f["condition"].map(cmap)
        if wrong.any():
            example = f.loc[wrong, ["condition", "category"]].iloc[0].to_dict()
            raise ValueError(f"{what}: the table's category disagrees with `categories`, e.g. {example}")
    keys = ["study", "arm", "seed", "condition", "level"]
    dup = f.duplicated(subset=keys, keep=False)
    if dup.any():
        example = f.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(f"{what}: {int(dup.sum())} accuracy rows repeat a (study, arm, seed, condition, "
                         f"level) cell, e.g. {example}")
    frame = f[keys[:-1]].assign(accuracy=pd.to_numeric(f["value"], errors="raise"))
    per = _groupby(frame, keys[:-1])["accuracy"].mean().reset_index()
    per = per[per["accuracy"].notna()]
    per = per.assign(category=per["condition"].map(cmap))
    return per[["study", "arm", "seed", "condition", "category", "accuracy"]].reset_index(drop=True)


def _baseline_accuracy(per: pd.DataFrame, baseline_arm: str, what: str) -> pd.DataFrame:
    """Baseline's seed-mean accuracy per (study, corruption): ``study, condition, baseline_accuracy``."""
    arms = set(per["arm"].unique())
    if baseline_arm not in arms:
        raise ValueError(f"{what}: baseline arm {baseline_arm!r} has no corruption accuracies "
                         f"(arms present: {sorted(map(str, arms))})")
    base = per[per["arm"] == baseline_arm]
    base = _groupby(base, ["study", "condition"])["accuracy"].mean().rename("baseline_accuracy").reset_index()
    studies = set(per["study"].astype(str).unique()) - set(base["study"].astype(str).unique())
    if studies:
        raise ValueError(f"{what}: baseline arm {baseline_arm!r} is missing from studies {sorted(studies)}")
    return base


def _category_scores(ratios: pd.DataFrame, keys: list[str], categories) -> pd.DataFrame:
    """Mean ``ratio`` over corruptions, overall and per category; NaN-free ``n_corruptions`` counts."""
    parts = []
    def mean(values: pd.Series) -> float:  # NaN ratios (0/0) propagate instead of being skipped
        return float(values.mean(skipna=False))

    for group_keys, category in ((keys, ALL_CATEGORIES), ([*keys, "category"], None)):
        agg = _groupby(ratios, group_keys)["ratio"].agg(score=mean, n_corruptions="size").reset_index()
        parts.append(agg.assign(category=category) if category else agg)
    out = pd.concat(parts, ignore_index=True)
    order = _category_order(categories)
    out["_order"] = out["category"].map({c: i for i, c in enumerate(order)})
    out = out.sort_values([*keys, "_order"], kind="stable").drop(columns="_order")
    out["n_corruptions"] = out["n_corruptions"].astype(int)
    return out.reset_index(drop=True)


def robustness_scores(tidy: pd.DataFrame, baseline_arm: str, categories) -> pd.DataFrame:
    r"""Safarani et al.'s robustness score of every arm relative to ``baseline_arm``.

    For corruption ``c`` let ``A_c`` be the accuracy averaged over its severities (levels 1..5)
    and then over the arm's seeds (each seed's severity mean first, so a seed missing a
    severity does not re-weight the others).  Then, per study::

        score = (1/C) * sum_c  A_c^arm / A_c^baseline

    over the ``C`` corruptions that both the arm and the baseline have -- over all corruptions
    (``category = "all"``) and over the corruptions of each category of ``categories``.  The
    baseline scores exactly 1; an arm with uniformly doubled accuracy scores 2.  The overall
    score is the mean over corruptions, not over category scores.

    Parameters
    ----------
    tidy
        Tidy rows of the ``corruptions`` evaluation (needs ``study, arm, seed, condition,
        level, metric, value``; ``evaluation`` and ``category`` are used when present).  Rows
        with ``metric == "accuracy"`` whose condition is a corruption are used; ``clean`` and
        ``neural`` rows and other evaluations are ignored.
    baseline_arm
        The reference arm (must be present in every study).
    categories
        ``{category: (corruption, ...)}``, e.g. ``neurobias.robustness.corruptions``'
        categories (noise, blur, weather, digital).

    Returns
    -------
    DataFrame ``study, arm, category, score, n_seeds, n_corruptions``: one row per (study,
    arm, category) with data, sorted by study and arm, categories in the order ``"all"``, then
    ``categories``' order.  A category without any corruption in the data has no row.  A
    baseline accuracy of 0 gives an infinite (or NaN) ratio, passed through.

    Raises
    ------
    ValueError
        Missing columns, a corruption in no category (or in the wrong one per the table's
        ``category`` column), duplicated (study, arm, seed, condition, level) rows, or a
        baseline absent from the data or from a study.
    """
    per = _seed_corruption_accuracy(tidy, categories, "robustness_scores")
    base = _baseline_accuracy(per, baseline_arm, "robustness_scores")
    arm_acc = _groupby(per, ["study", "arm", "condition", "category"])["accuracy"].mean().reset_index()
    n_seeds = _groupby(per, ["study", "arm"])["seed"].nunique().rename("n_seeds").reset_index()
    ratios = arm_acc.merge(base, on=["study", "condition"], how="inner")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios["ratio"] = ratios["accuracy"] / ratios["baseline_accuracy"]
    out = _category_scores(ratios, ["study", "arm"], categories)
    out = out.merge(n_seeds, on=["study", "arm"], how="left")
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out[list(_SCORE_COLUMNS)].reset_index(drop=True)


def robustness_scores_per_seed(tidy: pd.DataFrame, baseline_arm: str, categories) -> pd.DataFrame:
    """:func:`robustness_scores` of each model (seed) separately, to show seed spread.

    Each seed's ``A_c`` (mean over severities) is divided by the *baseline's seed-mean*
    ``A_c`` -- the same denominator as :func:`robustness_scores` -- so the seeds of an arm
    scatter around that arm's score (the mean of an arm's per-seed scores equals its score
    when every seed has every corruption) and the baseline's seeds scatter around 1.

    Returns ``study, arm, seed, category, score, n_corruptions``, one row per (study, arm,
    seed, category), sorted by study, arm and seed.  Inputs and errors as in
    :func:`robustness_scores`.
    """
    per = _seed_corruption_accuracy(tidy, categories, "robustness_scores_per_seed")
    base = _baseline_accuracy(per, baseline_arm, "robustness_scores_per_seed")
    ratios = per.merge(base, on=["study", "condition"], how="inner")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios["ratio"] = ratios["accuracy"] / ratios["baseline_accuracy"]
    out = _category_scores(ratios, ["study", "arm", "seed"], categories)
    return out[list(_SEED_SCORE_COLUMNS)].reset_index(drop=True)


def _sorted_seeds(seeds) -> list:
    try:
        return sorted(seeds)
    except TypeError:
        return sorted(seeds, key=str)


def bootstrap_robustness(
    correct: dict,
    conditions: Sequence[tuple[str, float]],
    baseline_arm: str,
    categories,
    repetitions: int = 250,
    seed: int = 0,
    level: float = 0.95,
    *,
    study: str | None = None,
    chunk_images: int = 4096,
) -> pd.DataFrame:
    r"""Percentile bootstrap intervals of :func:`robustness_scores`, overall and per category.

    Parameters
    ----------
    correct
        ``{(arm, seed): bool array [n_conditions, n_images]}``: whether each model classified
        each test image correctly under each condition.  Every model must have been evaluated
        on the same images (same indices, same corrupted versions).  0/1 integer arrays are
        accepted.
    conditions
        ``[(corruption, severity), ...]`` naming the rows of every array.  Rows whose
        corruption is ``"clean"`` are ignored; every other corruption must be in
        ``categories``.
    baseline_arm
        The reference arm; must be among the keys.
    categories
        ``{category: (corruption, ...)}`` as in :func:`robustness_scores`.
    repetitions, seed, level
        Number of bootstrap repetitions, seed of the :class:`numpy.random.Generator`, and the
        central coverage of the percentile interval.
    study
        Written into the ``study`` column (the arrays carry no study).
    chunk_images
        Images per block of the accumulation (bounds memory; does not change results).

    Each repetition

    1. resamples the test images with replacement -- the *same* draw for every arm, seed and
       condition (a paired resample) -- as multinomial counts ``w`` (``w_i`` = how often image
       ``i`` was drawn), so a model's accuracy under a condition is ``w @ correct / n_images``;
    2. resamples each arm's seeds with replacement (``n_seeds`` draws from its own seeds), so
       the interval covers both image sampling and training-seed variability;
    3. recomputes ``A_c`` (severity mean, then mean over the drawn seeds) for every arm and the
       baseline, and the score ``mean_c A_c^arm / A_c^baseline``.

    Random draws, in this order, from ``numpy.random.default_rng(seed)``:
    ``counts = rng.multinomial(n_images, [1/n_images] * n_images, size=repetitions)``, then
    for each arm in sorted order ``rng.integers(0, n_seeds, size=(repetitions, n_seeds))``
    indexing that arm's seeds in sorted order.  Results are deterministic for a given seed.
    The arithmetic is vectorised: one matrix product of all models' correctness with the
    count matrix (exact: integer sums in float32 below 2**24 images), no loop over images.

    Returns
    -------
    DataFrame ``study, arm, category, score, ci_low, ci_high, n_seeds, n_corruptions,
    n_images, repetitions, level``; ``score`` is the point estimate from the full data
    (equal to :func:`robustness_scores` on the same accuracies), ``ci_low``/``ci_high`` the
    ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the bootstrap scores.  Sorted by arm,
    categories in the order ``"all"`` then ``categories``.  The baseline's interval is [1, 1]
    by construction (it is its own reference in every repetition).  Zero baseline accuracy in
    a repetition gives inf/NaN, passed through.

    Raises
    ------
    ValueError
        Malformed keys or arrays (wrong shape, not boolean, different numbers of images),
        duplicated or unknown conditions, no corruption conditions, a missing baseline, or
        bad ``repetitions``/``level``.
    """
    what = "bootstrap_robustness"
    cmap = _category_map(categories, what)
    if int(repetitions) < 1:
        raise ValueError(f"{what}: repetitions must be >= 1, got {repetitions}")
    if not 0 < level < 1:
        raise ValueError(f"{what}: level must be in (0, 1), got {level}")
    repetitions = int(repetitions)
    conds = []
    for cond in conditions:
        if not isinstance(cond, (tuple, list)) or len(cond) != 2:
            raise ValueError(f"{what}: each condition must be (corruption, severity), got {cond!r}")
        conds.append((str(cond[0]), cond[1]))
    if len(set(conds)) != len(conds):
        raise ValueError(f"{what}: conditions repeat a (corruption, severity) pair")
    keep = [i for i, (c, _) in enumerate(conds) if c not in SAFARANI_NON_CORRUPTIONS]
    unknown = sorted({conds[i][0] for i in keep} - set(cmap))
    if unknown:
        raise ValueError(f"{what}: corruptions {unknown} are in none of the categories {sorted(categories)}")
    if not keep:
        raise ValueError(f"{what}: no corruption conditions (only {sorted({c for c, _ in conds})})")
    corruptions = list(dict.fromkeys(conds[i][0] for i in keep))
    # severity-averaging matrix: condition row -> corruption column
    average = np.zeros((len(keep), len(corruptions)))
    for r, i in enumerate(keep):
        average[r, corruptions.index(conds[i][0])] = 1.0
    average /= average.sum(axis=0, keepdims=True)

    if not isinstance(correct, dict) or not correct:
        raise ValueError(f"{what}: correct must be a non-empty dict {{(arm, seed): bool array}}")
    for key in correct:
        if not isinstance(key, tuple) or len(key) != 2:
            raise ValueError(f"{what}: keys of correct must be (arm, seed) tuples, got {key!r}")
    arms = sorted({a for a, _ in correct}, key=str)
    if baseline_arm not in arms:
        raise ValueError(f"{what}: baseline arm {baseline_arm!r} is not among the arms {arms}")
    keys = [(a, s) for a in arms for s in _sorted_seeds([s for b, s in correct if b == a])]
    n_images = None
    arrays = []
    for key in keys:
        arr = np.asarray(correct[key])
        if arr.ndim != 2 or arr.shape[0] != len(conds):
            raise ValueError(f"{what}: correct[{key!r}] has shape {arr.shape}; expected "
                             f"({len(conds)}, n_images)")
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{what}: correct[{key!r}] must be boolean (or 0/1)")
            arr = arr.astype(bool)
        if n_images is None:
            n_images = arr.shape[1]
        elif arr.shape[1] != n_images:
            raise ValueError(f"{what}: correct[{key!r}] has {arr.shape[1]} images, others {n_images}")
        arrays.append(arr[keep])
    if not n_images:
        raise ValueError(f"{what}: no images")

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=repetitions)
    dtype = np.float32 if n_images < 2**24 else np.float64
    n_models, n_kept = len(keys), len(keep)
    hits_b = np.zeros((n_models * n_kept, repetitions))
    hits = np.zeros(n_models * n_kept)
    step = max(1, int(chunk_images))
    for start in range(0, n_images, step):
        block = np.concatenate([a[:, start:start + step] for a in arrays]).astype(dtype)
        hits_b += block @ counts[:, start:start + step].T.astype(dtype)
        hits += block.sum(axis=1, dtype=np.float64)
    # per model and corruption: severity-mean accuracy, [reps, models, corruptions]
    acc_b = np.einsum("mkb,kc->bmc", hits_b.reshape(n_models, n_kept, repetitions) / n_images, average)
    acc = (hits.reshape(n_models, n_kept) / n_images) @ average

    rows_of = {a: np.array([i for i, (b, _) in enumerate(keys) if b == a]) for a in arms}
    arm_acc, arm_acc_b = {}, {}
    for a in arms:
        rows = rows_of[a]
        draw = rng.integers(0, len(rows), size=(repetitions, len(rows)))
        chosen = rows[draw]  # [reps, n_seeds] model indices
        arm_acc_b[a] = acc_b[np.arange(repetitions)[:, None], chosen].mean(axis=1)  # [reps, corruptions]
        arm_acc[a] = acc[rows].mean(axis=0)

    order = _category_order(categories)
    members = {ALL_CATEGORIES: list(range(len(corruptions)))}
    for cat in categories:
        idx = [j for j, c in enumerate(corruptions) if cmap[c] == cat]
        if idx:
            members[cat] = idx
    q = ((1 - level) / 2, (1 + level) / 2)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in arms:
            ratio = arm_acc[a] / arm_acc[baseline_arm]
            ratio_b = arm_acc_b[a] / arm_acc_b[baseline_arm]
            for cat in (c for c in order if c in members):
                idx = members[cat]
                lo, hi = np.quantile(ratio_b[:, idx].mean(axis=1), q)
                rows.append({"study": study, "arm": a, "category": cat, "score": float(ratio[idx].mean()),
                             "ci_low": float(lo), "ci_high": float(hi), "n_seeds": len(rows_of[a]),
                             "n_corruptions": len(idx), "n_images": int(n_images),
                             "repetitions": repetitions, "level": float(level)})
    return pd.DataFrame(rows, columns=list(_BOOTSTRAP_COLUMNS))


def model_robustness_table(tidy: pd.DataFrame, arms_table: pd.DataFrame, baseline_arm: str,
                           categories) -> pd.DataFrame:
    """One row per model (study, arm, seed) for the neural-prediction regression.

    Columns ``study, arm, seed, base_arm, batch_ratio, pool, clean_accuracy,
    neural_prediction_r, robustness``:

    * ``base_arm``, ``batch_ratio`` from ``arms_table`` (columns ``arm, base_arm,
      batch_ratio``; with a ``study`` column it is matched on study and arm);
      ``pool = base_arm``, so :func:`two_factor_regression` with ``by=("pool",)`` fits the
      ``mtl_monkey`` batch-ratio sweep and the ``mtl_shuffled`` sweep separately;
    * ``clean_accuracy``: the ``clean`` condition's ``accuracy``;
    * ``neural_prediction_r``: the ``neural`` condition's ``neural_prediction_r`` (NaN for arms
      without a neural head, or when missing);
    * ``robustness``: the model's overall score from :func:`robustness_scores_per_seed` (its
      own ``A_c`` over the baseline's seed-mean ``A_c``).

    Models are the (study, arm, seed) with corruption accuracies; sorted by study, arm, seed.

    Raises
    ------
    ValueError
        Missing columns (tidy or arms table), arms absent from the arms table, an arm listed
        twice there, or repeated clean/neural rows for one model.
    """
    what = "model_robustness_table"
    _require_columns(arms_table, ("arm", "base_arm", "batch_ratio"), f"{what} (arms_table)")
    scores = robustness_scores_per_seed(tidy, baseline_arm, categories)
    models = scores[scores["category"] == ALL_CATEGORIES][["study", "arm", "seed", "score"]]
    models = models.rename(columns={"score": "robustness"})

    f = tidy[tidy["evaluation"] == "corruptions"] if "evaluation" in tidy.columns else tidy
    keys = ["study", "arm", "seed"]
    for condition, metric, column in (("clean", "accuracy", "clean_accuracy"),
                                      ("neural", "neural_prediction_r", "neural_prediction_r")):
        g = f[(f["condition"] == condition) & (f["metric"] == metric)]
        dup = g.duplicated(subset=keys, keep=False)
        if dup.any():
            example = g.loc[dup, keys].iloc[0].to_dict()
            raise ValueError(f"{what}: {condition!r} {metric} repeated for one model, e.g. {example}")
        g = g[keys].assign(**{column: pd.to_numeric(g["value"], errors="raise").astype(float)})
        models = models.merge(g, on=keys, how="left")

    on = ["study", "arm"] if "study" in arms_table.columns else ["arm"]
    table = arms_table[[*on, "base_arm", "batch_ratio"]]
    dup = table.duplicated(subset=on, keep=False)
    if dup.any():
        raise ValueError(f"{what}: arms_table lists {sorted(map(str, table.loc[dup, 'arm'].unique()))} "
                         f"more than once")
    missing = sorted(set(map(str, models["arm"])) - set(map(str, table["arm"])))
    if missing:
        raise ValueError(f"{what}: arms {missing} are not in arms_table")
    models = models.merge(table, on=on, how="left")
    models["batch_ratio"] = pd.to_numeric(models["batch_ratio"], errors="coerce").astype(float)
    models["pool"] = models["base_arm"]
    models = models.sort_values(keys, kind="stable")
    return models[list(_MODEL_TABLE_COLUMNS)].reset_index(drop=True)


def two_factor_regression(
    models: pd.DataFrame,
    y: str = "robustness",
    x: Sequence[str] = ("neural_prediction_r", "clean_accuracy"),
    by: Sequence[str] = ("pool",),
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    r"""OLS of ``y`` on the ``x`` columns (plus a constant) across models, per group.

    Safarani et al. ask whether neural prediction performance explains robustness beyond
    clean accuracy: ``robustness ~ 1 + neural_prediction_r + clean_accuracy`` within each
    batch-ratio pool (:func:`model_robustness_table`).  Fitted with
    :class:`statsmodels.regression.linear_model.OLS` on a constant plus ``x``.

    Returns
    -------
    DataFrame ``*by, term, coef, se, t, p, ci_low, ci_high, beta, x_mean, r2, adj_r2, n,
    df_resid, f, f_p, note``: one row per (group, term), terms ``"Intercept"`` then ``x`` in
    order.  ``p`` is two-sided; ``ci_low``/``ci_high`` the ``level`` confidence interval;
    ``beta`` the standardised coefficient (the slope when ``y`` and the ``x`` are z-scored,
    ``coef * sd(x) / sd(y)``; NaN for the intercept, which is 0 after z-scoring) so the
    factors' contributions can be compared; ``x_mean`` the regressor's mean over the fitted
    models (NaN for the intercept; e.g. to draw the fit at the mean clean accuracy).  The
    group-level ``r2, adj_r2, n, df_resid, f, f_p`` repeat on each term row; ``note`` is ``""``
    for a fit.

    Rows with NaN in ``y`` or any ``x`` are dropped.  A group with fewer than
    ``max(4, len(x) + 2)`` complete models, a constant regressor or ``y``, or collinear
    regressors gives NaN statistics (``n`` still counted) and a ``note`` saying why -- no
    exception.

    Raises
    ------
    ValueError
        Missing columns (named), no regressors, ``y`` among ``x``, repeated regressors, or
        ``level`` outside (0, 1).
    """
    import statsmodels.api as sm  # heavy import, only needed here

    by = _as_tuple(by)
    x = _as_tuple(x)
    what = "two_factor_regression"
    if not x:
        raise ValueError(f"{what}: no regressors")
    if y in x:
        raise ValueError(f"{what}: y {y!r} is also a regressor")
    if len(set(x)) != len(x):
        raise ValueError(f"{what}: regressors repeat: {list(x)}")
    if not 0 < level < 1:
        raise ValueError(f"{what}: level must be in (0, 1), got {level}")
    _require_columns(models, (*by, y, *x), what)
    terms = ("Intercept", *x)
    min_n = max(4, len(x) + 2)
    groups = _groupby(models, by) if by else [((), models)]
    rows = []
    nan = float("nan")
    for key, group in groups:
        keys = _key_dict(by, key) if by else {}
        data = group[[y, *x]].apply(pd.to_numeric, errors="coerce").astype(float).dropna()
        n = len(data)
        note = ""
        if n < min_n:
            note = f"fewer than {min_n} models with {y} and {', '.join(x)} (n = {n})"
        else:
            constant = [c for c in x if data[c].nunique() < 2]
            if constant:
                note = f"constant regressor {', '.join(constant)}"
            elif data[y].nunique() < 2:
                note = f"constant {y}"
            elif np.linalg.matrix_rank(sm.add_constant(data[list(x)], has_constant="add").to_numpy()) < len(terms):
                note = f"collinear regressors {', '.join(x)}"
        if note:
            for term in terms:
                rows.append({**keys, "term": term, **{c: nan for c in _REGRESSION_COLUMNS[1:-1]},
                             "n": n, "note": note})
            continue
        design = sm.add_constant(data[list(x)], has_constant="add").rename(columns={"const": "Intercept"})
        fit = sm.OLS(data[y], design).fit()
        ci = fit.conf_int(alpha=1 - level)
        sd_y = float(data[y].std(ddof=1))
        for term in terms:
            is_x = term != "Intercept"
            rows.append({
                **keys, "term": term,
                "coef": float(fit.params[term]), "se": float(fit.bse[term]),
                "t": float(fit.tvalues[term]), "p": float(fit.pvalues[term]),
                "ci_low": float(ci.loc[term, 0]), "ci_high": float(ci.loc[term, 1]),
                "beta": float(fit.params[term] * data[term].std(ddof=1) / sd_y) if is_x else nan,
                "x_mean": float(data[term].mean()) if is_x else nan,
                "r2": float(fit.rsquared), "adj_r2": float(fit.rsquared_adj), "n": n,
                "df_resid": float(fit.df_resid), "f": float(fit.fvalue), "f_p": float(fit.f_pvalue),
                "note": "",
            })
    out = pd.DataFrame(rows, columns=[*by, *_REGRESSION_COLUMNS])
    out["n"] = out["n"].astype(int)
    return out.reset_index(drop=True)
