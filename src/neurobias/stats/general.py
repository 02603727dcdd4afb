"""General statistics on tidy evaluation results, used by every study.

Every function here is pure: it takes a tidy :class:`pandas.DataFrame` (one row
per observation, columns ``study, arm, seed, evaluation, condition, level,
metric, value``; several result CSVs may have been concatenated) and returns a
new DataFrame.  Nothing reads or writes files, nothing mutates its input.

Contents
--------
Descriptive
    :func:`summarise` -- mean, SEM, SD and n of ``value`` per group (over seeds).
Inferential
    :func:`compare_to_baseline` -- one-tailed t-test (paired over seeds, or
    Welch's) of every arm against a baseline arm, per group, in the direction
    that means "better" (:data:`METRIC_BETTER`), with p adjusted for multiple
    comparisons within the family of one baseline (:func:`adjust_p`: Holm,
    Benjamini--Hochberg or none) and significance marks from the adjusted p
    (:func:`significance_mark`, the marks of Federer et al. 2020, "Improved
    object recognition using neural networks trained to mimic the brain's
    statistical properties").  Li et al. 2019's noise and adversarial
    evaluations and Federer et al.'s final-epoch tests use it;
    :func:`describe_tests` words a tests table for a figure caption.
Across models
    :func:`correlate` -- Pearson r of one column with others across models (rows),
    e.g. V1 explained variance against robustness as in Dapello et al. 2020.
Helpers
    :func:`welch_df` -- Welch--Satterthwaite degrees of freedom.
    :data:`TIDY_COLUMNS`, :data:`GROUP_KEYS` -- the column conventions;
    :data:`SIGNIFICANCE_LEVELS` -- the thresholds of the marks;
    :data:`TESTS`, :data:`CORRECTIONS`, :data:`BETTER_ALTERNATIVE`,
    :data:`METRIC_BETTER`, :data:`BOOKKEEPING_METRICS` -- the test options and
    what "better" means per metric.
    ``_as_tuple``, ``_require_columns``, ``_groupby``, ``_key_dict`` -- building
    blocks shared by the per-paper modules.

Per-paper statistics live next to this module:
:mod:`neurobias.stats.federer2020` (learning-curve records) and
:mod:`neurobias.stats.safarani2021` (corruption robustness scores, their
bootstrap intervals, the per-model table and the two-factor regression) and
:mod:`neurobias.stats.brain_likeness` (Dapello et al. 2020's table of all
models and its correlations).

Extending
---------
Later analyses belong in :mod:`neurobias.stats` as further pure functions
following the same conventions -- here if any study can use them, in the
paper's module otherwise (a function whose input is not a tidy table, such as
:func:`~neurobias.stats.safarani2021.bootstrap_robustness` on per-image arrays,
still returns a DataFrame and validates with ValueError):

* accept ``df`` plus a ``by`` tuple of grouping columns, validate with
  :func:`_require_columns`;
* group with :func:`_groupby` (keeps NaN keys, sorted, deterministic order);
* return one row per group with the ``by`` columns first, then result columns;
* never raise for too-small groups -- return NaN and say so in the docstring;
  raise :class:`ValueError` only for inputs that are malformed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps
from statsmodels.stats.multitest import multipletests

__all__ = [
    "TIDY_COLUMNS",
    "GROUP_KEYS",
    "SIGNIFICANCE_LEVELS",
    "TESTS",
    "CORRECTIONS",
    "BETTER_ALTERNATIVE",
    "METRIC_BETTER",
    "BOOKKEEPING_METRICS",
    "summarise",
    "compare_to_baseline",
    "adjust_p",
    "describe_tests",
    "significance_mark",
    "welch_df",
    "correlate",
]

#: Columns of a tidy results table, in canonical order.
TIDY_COLUMNS: tuple[str, ...] = (
    "study",
    "arm",
    "seed",
    "evaluation",
    "condition",
    "level",
    "metric",
    "value",
)

#: Everything that identifies one cell of the design except ``arm`` and ``seed``.
GROUP_KEYS: tuple[str, ...] = ("study", "evaluation", "condition", "level", "metric")

#: ``(threshold, mark)`` pairs, most stringent first (Federer et al.'s marks).
SIGNIFICANCE_LEVELS: tuple[tuple[float, str], ...] = ((0.001, "**"), (0.05, "*"))


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _as_tuple(by: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(by, str):
        return (by,)
    return tuple(by)


def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what}: missing column(s) {missing}; have {list(df.columns)}"
        )


def _groupby(df: pd.DataFrame, by: Sequence[str]):
    """Deterministic groupby that keeps rows whose keys are NaN."""
    return df.groupby(list(by), sort=True, dropna=False, observed=True)


def _key_dict(by: Sequence[str], key) -> dict:
    if not isinstance(key, tuple):
        key = (key,)
    return dict(zip(by, key))


def significance_mark(p: float) -> str:
    """Federer's marks: ``'**'`` if p < 0.001, ``'*'`` if p < 0.05, else ``''``.

    NaN p-values get ``''``.
    """
    if p is None or not np.isfinite(p):
        return ""
    for threshold, mark in SIGNIFICANCE_LEVELS:
        if p < threshold:
            return mark
    return ""


def welch_df(var1: float, n1: int, var2: float, n2: int) -> float:
    """Welch--Satterthwaite degrees of freedom.

    ``df = (v1/n1 + v2/n2)**2 / ((v1/n1)**2/(n1-1) + (v2/n2)**2/(n2-1))``
    with ``v`` the sample variances (ddof=1).  NaN if either n < 2 or both
    variances are zero.
    """
    if n1 < 2 or n2 < 2:
        return float("nan")
    a, b = var1 / n1, var2 / n2
    denom = a * a / (n1 - 1) + b * b / (n2 - 1)
    if not denom > 0:
        return float("nan")
    return float((a + b) ** 2 / denom)


# --------------------------------------------------------------------------- #
# descriptive
# --------------------------------------------------------------------------- #
def summarise(
    df: pd.DataFrame,
    by: Sequence[str] = ("study", "evaluation", "condition", "level", "metric", "arm"),
) -> pd.DataFrame:
    """Mean, SEM, SD and n of ``value`` per group.

    Parameters
    ----------
    df
        Tidy results (needs the ``by`` columns and ``value``).
    by
        Grouping columns.  The default summarises across seeds.

    Returns
    -------
    DataFrame with columns ``*by, mean, sem, sd, n``, one row per group,
    sorted by ``by``.  ``sd`` uses ddof=1 and ``sem = sd / sqrt(n)``; ``n``
    counts non-NaN values.  Groups with n < 2 have NaN ``sd`` and ``sem``.
    """
    by = _as_tuple(by)
    _require_columns(df, (*by, "value"), "summarise")
    values = pd.to_numeric(df["value"], errors="raise")
    frame = df[list(by)].assign(value=values)
    out = (
        _groupby(frame, by)["value"]
        .agg(mean="mean", sd="std", n="count")  # pandas std is ddof=1
        .reset_index()
    )
    out["n"] = out["n"].astype(int)
    out["sem"] = out["sd"] / np.sqrt(out["n"].where(out["n"] > 0))
    return out[[*by, "mean", "sem", "sd", "n"]].reset_index(drop=True)


# --------------------------------------------------------------------------- #
# inferential
# --------------------------------------------------------------------------- #
#: The tests :func:`compare_to_baseline` runs: ``"paired"`` (:func:`scipy.stats.ttest_rel`
#: over the seeds both arms have) and ``"welch"`` (:func:`scipy.stats.ttest_ind`,
#: ``equal_var=False``).
TESTS: tuple[str, ...] = ("paired", "welch")

#: Multiple-comparison corrections: our name -> the ``method`` of
#: :func:`statsmodels.stats.multitest.multipletests` (None: p is not adjusted).
CORRECTIONS: dict[str, str | None] = {"holm": "holm", "bh": "fdr_bh", "none": None}

#: What "better" means -> the one-tailed alternative that asks "is the arm better?".
BETTER_ALTERNATIVE: dict[str, str] = {"higher": "greater", "lower": "less"}

#: What "better" means for each metric of the tidy tables the ``stats`` job tests.
#: Accuracies: higher.  Minimal adversarial perturbation sizes (``median_l2``,
#: ``median_linf``): higher -- a larger perturbation is needed to fool the model.
#: Attack success rates: lower -- the attack fails more often.
METRIC_BETTER: dict[str, str] = {
    "accuracy": "higher",
    "clean_accuracy": "higher",
    "mean_accuracy": "higher",
    "white_box_accuracy": "higher",
    "median_l2": "higher",
    "median_linf": "higher",
    "success_rate_l2": "lower",
    "success_rate_linf": "lower",
}

#: Metrics that are bookkeeping, not outcomes (the number of attacked images): never tested.
BOOKKEEPING_METRICS: frozenset[str] = frozenset({"n_images"})

_COMPARE_RESULT_COLUMNS: tuple[str, ...] = (
    "arm",
    "baseline",
    "mean",
    "sem",
    "n",
    "baseline_mean",
    "baseline_sem",
    "baseline_n",
    "difference",
    "test",
    "n_pairs",
    "t",
    "df",
    "better",
    "alternative",
    "p",
    "correction",
    "p_adjusted",
    "significance",
)


def _describe(values: np.ndarray) -> tuple[float, float, float, int]:
    """mean, variance (ddof=1), sem, n -- NaN where undefined."""
    n = int(values.size)
    mean = float(values.mean()) if n else float("nan")
    var = float(values.var(ddof=1)) if n > 1 else float("nan")
    sem = float(np.sqrt(var / n)) if n > 1 else float("nan")
    return mean, var, sem, n


def adjust_p(p: Sequence[float], correction: str) -> np.ndarray:
    """p-values of one family adjusted for multiple comparisons.

    ``correction`` is ``"holm"`` (Holm's step-down, controls the family-wise
    error rate), ``"bh"`` (Benjamini--Hochberg, controls the false discovery
    rate) or ``"none"`` (p returned unchanged), computed by
    :func:`statsmodels.stats.multitest.multipletests`.  NaN p-values (tests that
    could not be run) stay NaN and do not count towards the family's size.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"adjust_p: correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    p = np.asarray(p, dtype=float)
    method = CORRECTIONS[correction]
    if method is None:
        return p.copy()
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method=method)[1]
    return out


def _better_of(better: str | Mapping[str, str], keys: dict) -> str:
    if isinstance(better, str):
        return better
    return better[keys["metric"]]


def _check_better(better, by: Sequence[str], df: pd.DataFrame) -> None:
    values = [better] if isinstance(better, str) else list(better.values())
    bad = [v for v in values if v not in BETTER_ALTERNATIVE]
    if bad:
        raise ValueError(f"compare_to_baseline: better must be 'higher' or 'lower', got {bad}")
    if isinstance(better, str):
        return
    if "metric" not in by:
        raise ValueError("compare_to_baseline: a per-metric `better` needs 'metric' in `by`")
    missing = sorted(set(map(str, df["metric"].dropna().unique())) - set(better))
    if missing:
        raise ValueError(
            f"compare_to_baseline: no direction for metric(s) {missing}; say whether higher or "
            f"lower is better (neurobias.stats.METRIC_BETTER) or leave them out"
        )


def _run_test(test: str, a: pd.Series, b: pd.Series, alternative: str) -> dict:
    """One test of arm values ``a`` against baseline values ``b`` (both indexed by seed)."""
    nan = float("nan")
    if test == "paired":
        common = a.index.intersection(b.index).sort_values()
        x, y = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
        n_pairs = int(common.size)
        out = {"n_pairs": n_pairs, "difference": float((x - y).mean()) if n_pairs else nan,
               "t": nan, "df": nan, "p": nan}
        if n_pairs >= 2:
            with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = _sps.ttest_rel(x, y, alternative=alternative)
            out.update(t=float(res.statistic), df=float(n_pairs - 1), p=float(res.pvalue))
        return out
    x, y = a.to_numpy(float), b.to_numpy(float)
    out = {"n_pairs": pd.NA, "difference": float(x.mean() - y.mean()) if x.size and y.size else nan,
           "t": nan, "df": nan, "p": nan}
    if x.size >= 2 and y.size >= 2:
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = _sps.ttest_ind(x, y, equal_var=False, alternative=alternative)
        out.update(t=float(res.statistic), p=float(res.pvalue),
                   df=welch_df(x.var(ddof=1), x.size, y.var(ddof=1), y.size))
    return out


def compare_to_baseline(
    df: pd.DataFrame,
    baseline: str = "none",
    by: Sequence[str] = GROUP_KEYS,
    alternative: str | None = None,
    *,
    better: str | Mapping[str, str] = "higher",
    test: str = "welch",
    correction: str = "none",
) -> pd.DataFrame:
    r"""One-tailed t-test of every arm against the baseline arm, per group, p adjusted per family.

    Within each group defined by ``by`` the ``value`` of each arm other than
    ``baseline`` (one value per seed) is compared with the baseline's values.

    ``test="paired"`` -- :func:`scipy.stats.ttest_rel` on the seeds present in
    both arms, matched by the ``seed`` column (not by row order)::

        d_s = x_arm,s - x_baseline,s          for the n_pairs common seeds s
        t   = mean(d) / (sd(d) / sqrt(n_pairs)),   df = n_pairs - 1

    Seeds that one of the two arms lacks (or has NaN for) are dropped from the
    test; ``n_pairs`` says how many remained.  This is the design of the
    studies: arms share seeds (the same seed draws the same initialisation and
    data order) and are evaluated on the same test images, so the per-seed
    difference removes the seed's own luck from the comparison.

    ``test="welch"`` -- :func:`scipy.stats.ttest_ind` with ``equal_var=False``
    on all values of each arm (unpaired)::

        t  = (m_a - m_b) / sqrt(s_a**2/n_a + s_b**2/n_b)
        df = (s_a**2/n_a + s_b**2/n_b)**2
             / ( (s_a**2/n_a)**2/(n_a-1) + (s_b**2/n_b)**2/(n_b-1) )

    (Welch--Satterthwaite, :func:`welch_df`).  The library default, kept for
    unpaired designs; the studies choose ``statistics.test`` in the config
    (default paired).

    Direction.  ``better`` says what a better arm looks like: ``"higher"``
    (test ``alternative="greater"``, ``p = P(T_df >= t)``: does the arm beat
    the baseline?) or ``"lower"`` (``alternative="less"``), either one string
    for every row or a mapping ``{metric: "higher" | "lower"}`` (needs
    ``metric`` in ``by``; e.g. :data:`METRIC_BETTER`).  An explicit
    ``alternative`` (``"greater"``, ``"less"`` or ``"two-sided"``) overrides the
    one ``better`` implies for every row; the ``better`` column still says
    what better means.

    Multiple comparisons.  ``correction`` (``"holm"``, ``"bh"`` or ``"none"``,
    see :func:`adjust_p`) adjusts the p-values of one *family*: every row this
    call returns, i.e. every (group, arm) compared with this one baseline --
    all noise levels x arms x metrics of a tests table against the baseline
    form one family.  A table that stacks calls with different baselines (the
    ``stats`` job: vs the baseline, then vs each control arm) therefore has one
    family per ``baseline`` value.  NaN p-values are left out of the family.
    ``significance`` marks come from ``p_adjusted``.

    Parameters
    ----------
    df
        Tidy results with the ``by`` columns plus ``arm`` and ``value`` (and
        ``seed`` for the paired test).
    baseline
        Name of the reference arm (``"none"`` = unregularised model).
    by
        Columns that define one comparison cell; must not contain ``arm``.
    alternative
        None (from ``better``), ``"greater"``, ``"less"`` or ``"two-sided"``.
    better
        ``"higher"``, ``"lower"`` or a per-metric mapping of them.
    test
        ``"paired"`` or ``"welch"``.
    correction
        ``"holm"``, ``"bh"`` or ``"none"``.

    Returns
    -------
    DataFrame with columns ``*by, arm, baseline, mean, sem, n, baseline_mean,
    baseline_sem, baseline_n, difference, test, n_pairs, t, df, better,
    alternative, p, correction, p_adjusted, significance``, one row per
    (group, non-baseline arm), sorted by ``by`` then ``arm``.

    ``mean, sem, n`` (and the ``baseline_*`` ones) describe all non-NaN values
    of each arm, as :func:`summarise` does.  ``difference`` is the difference
    the test is about: the mean of the per-seed differences over the matched
    seeds (paired), ``mean - baseline_mean`` (Welch); the two agree when both
    arms have the same seeds.  ``n_pairs`` is the number of matched seeds
    (paired; empty for Welch).  ``p`` is the raw one-tailed p-value,
    ``p_adjusted`` the adjusted one; ``significance`` is ``'**'`` for
    ``p_adjusted < 0.001``, ``'*'`` for ``p_adjusted < 0.05``, else ``''``
    (Federer's marks).

    Small groups: fewer than two values on either side (Welch) or fewer than
    two matched seeds (paired) give NaN ``t``, ``df``, ``p`` and ``p_adjusted``
    and an empty mark -- no exception is raised.  Zero variance (of the values,
    or of the paired differences) leaves the statistic undefined and scipy's
    result (NaN or +/-inf) is passed through.  NaN values are dropped before
    testing.

    Raises
    ------
    ValueError
        If required columns are missing (``seed`` for the paired test),
        ``test``, ``correction``, ``better`` or ``alternative`` is invalid, a
        metric has no direction in a ``better`` mapping, the baseline arm is
        absent from the data or from a group that has other arms, or a (group,
        arm, seed) cell occurs more than once (that would silently count one
        seed as several replicates -- e.g. the same CSV concatenated twice).
    """
    by = _as_tuple(by)
    if "arm" in by:
        raise ValueError("compare_to_baseline: `by` must not contain 'arm'")
    if alternative not in (None, "greater", "less", "two-sided"):
        raise ValueError(
            f"compare_to_baseline: alternative must be 'greater', 'less' or "
            f"'two-sided', got {alternative!r}"
        )
    if test not in TESTS:
        raise ValueError(f"compare_to_baseline: test must be one of {list(TESTS)}, got {test!r}")
    if correction not in CORRECTIONS:
        raise ValueError(
            f"compare_to_baseline: correction must be one of {sorted(CORRECTIONS)}, got {correction!r}"
        )
    _require_columns(df, (*by, "arm", "value", *(("seed",) if test == "paired" else ())),
                     "compare_to_baseline")
    _check_better(better, by, df)

    arms_present = set(df["arm"].dropna().unique())
    if baseline not in arms_present:
        raise ValueError(
            f"compare_to_baseline: baseline arm {baseline!r} is not in the data "
            f"(arms present: {sorted(map(str, arms_present))})"
        )

    has_seed = "seed" in df.columns
    if has_seed:
        dup = df.duplicated(subset=[*by, "arm", "seed"], keep=False)
        if dup.any():
            example = df.loc[dup, [*by, "arm", "seed"]].iloc[0].to_dict()
            raise ValueError(
                f"compare_to_baseline: {int(dup.sum())} rows repeat a "
                f"(group, arm, seed) cell, e.g. {example}; each seed must be one "
                f"observation (deduplicate or average first)"
            )

    frame = df[[*by, "arm"]].assign(
        value=pd.to_numeric(df["value"], errors="raise"),
        seed=df["seed"] if has_seed else np.arange(len(df)),
    )
    frame = frame[frame["value"].notna()]

    rows: list[dict] = []
    for key, group in _groupby(frame, by):
        keys = _key_dict(by, key)
        arms = {a: g.set_index("seed")["value"] for a, g in group.groupby("arm", sort=True)}
        others = [a for a in arms if a != baseline]
        if not others:
            continue
        if baseline not in arms:
            raise ValueError(
                f"compare_to_baseline: baseline arm {baseline!r} has no values in "
                f"group {keys} (arms there: {sorted(map(str, arms))})"
            )
        b = arms[baseline]
        b_mean, _, b_sem, b_n = _describe(b.to_numpy(float))
        direction = _better_of(better, keys)
        tail = alternative or BETTER_ALTERNATIVE[direction]
        for arm in others:
            a_mean, _, a_sem, a_n = _describe(arms[arm].to_numpy(float))
            result = _run_test(test, arms[arm], b, tail)
            rows.append(
                {
                    **keys,
                    "arm": arm,
                    "baseline": baseline,
                    "mean": a_mean,
                    "sem": a_sem,
                    "n": a_n,
                    "baseline_mean": b_mean,
                    "baseline_sem": b_sem,
                    "baseline_n": b_n,
                    "difference": result["difference"],
                    "test": test,
                    "n_pairs": result["n_pairs"],
                    "t": result["t"],
                    "df": result["df"],
                    "better": direction,
                    "alternative": tail,
                    "p": result["p"],
                    "correction": correction,
                }
            )

    out = pd.DataFrame(rows, columns=[*by, *_COMPARE_RESULT_COLUMNS])
    out[["n", "baseline_n"]] = out[["n", "baseline_n"]].astype(int)
    out["n_pairs"] = out["n_pairs"].astype("Int64")
    out["p_adjusted"] = adjust_p(out["p"].to_numpy(float), correction)
    out["significance"] = [significance_mark(p) for p in out["p_adjusted"]]
    return out.reset_index(drop=True)


_TEST_WORDS = {"paired": "paired t-test over seeds", "welch": "Welch t-test (unpaired)"}
_CORRECTION_WORDS = {"holm": "Holm-adjusted", "bh": "Benjamini–Hochberg-adjusted (FDR)"}


def describe_tests(tests: pd.DataFrame, versus: str = "baseline", metrics: Sequence[str] | None = None) -> str:
    """One sentence for a caption: which test, which direction, which correction.

    ``tests`` is a :func:`compare_to_baseline` table of one family (the rows of one
    ``baseline``); ``versus`` names what the arms were compared with (e.g. ``"r = 0
    on the same labels"``); ``metrics``, if given, limits the direction text to the
    metrics a figure shows (the family size still counts every row with a p-value).
    E.g. ``"one-tailed paired t-test over seeds vs baseline (better: higher
    accuracy), p Holm-adjusted within the 30 comparisons with the same baseline"``.
    """
    _require_columns(tests, ("test", "correction", "better", "p", "baseline"), "describe_tests")
    if tests.empty:
        return "no tests"
    name = " / ".join(_TEST_WORDS.get(t, str(t)) for t in sorted(tests["test"].unique()))
    shown = tests if metrics is None else tests[tests["metric"].isin(list(metrics))]
    if "metric" in shown.columns:
        pairs = shown[["better", "metric"]].drop_duplicates().sort_values(["better", "metric"])
        direction = ", ".join(f"{b} {m}" for b, m in zip(pairs["better"], pairs["metric"]))
    else:
        direction = ", ".join(sorted(shown["better"].unique()))
    text = f"one-tailed {name} vs {versus} (better: {direction})"
    corrections = sorted(tests["correction"].unique())
    if corrections == ["none"]:
        return text + ", p not adjusted for multiple comparisons"
    sizes = tests[tests["p"].notna()].groupby("baseline").size()
    size = "/".join(str(int(n)) for n in sizes.unique()) or "0"
    words = " / ".join(_CORRECTION_WORDS.get(c, str(c)) for c in corrections)
    return f"{text}, p {words} within the {size} comparisons with the same baseline"


# --------------------------------------------------------------------------- #
# correlations across models (e.g. brain-likeness vs robustness)
# --------------------------------------------------------------------------- #
def correlate(df: pd.DataFrame, x: str, ys: Sequence[str], by: Sequence[str] = ()) -> pd.DataFrame:
    """Pearson correlation of column ``x`` with each column in ``ys`` across rows (models).

    Returns one row per (group, y): ``*by, x, y, r, p, n`` with ``scipy.stats.pearsonr``
    (two-sided p). Rows where x or y is NaN are dropped per pair; fewer than three pairs, or a
    constant column, give NaN r and p (no exception).
    """
    by = _as_tuple(by)
    _require_columns(df, (*by, x, *ys), "correlate")
    groups = _groupby(df, by) if by else [((), df)]
    rows = []
    for key, group in groups:
        keys = _key_dict(by, key) if by else {}
        for y in ys:
            pair = group[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
            n = len(pair)
            if n >= 3 and pair[x].nunique() > 1 and pair[y].nunique() > 1:
                res = _sps.pearsonr(pair[x], pair[y])
                r, p = float(res.statistic), float(res.pvalue)
            else:
                r = p = float("nan")
            rows.append({**keys, "x": x, "y": y, "r": r, "p": p, "n": n})
    return pd.DataFrame(rows, columns=[*by, "x", "y", "r", "p", "n"])
