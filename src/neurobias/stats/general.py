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
    :func:`compare_to_baseline` -- one-tailed Welch t-test of every arm against
    the unregularised baseline arm, per group, with significance marks
    (:func:`significance_mark`, the marks of Federer et al. 2020, "Improved
    object recognition using neural networks trained to mimic the brain's
    statistical properties").  Li et al. 2019's noise and adversarial
    evaluations, Federer et al.'s learning curves and Safarani et al. 2021's
    accuracy summaries all use it.
Across models
    :func:`correlate` -- Pearson r of one column with others across models (rows),
    e.g. V1 explained variance against robustness as in Dapello et al. 2020.
Helpers
    :func:`welch_df` -- Welch--Satterthwaite degrees of freedom.
    :data:`TIDY_COLUMNS`, :data:`GROUP_KEYS` -- the column conventions;
    :data:`SIGNIFICANCE_LEVELS` -- the thresholds of the marks.
    ``_as_tuple``, ``_require_columns``, ``_groupby``, ``_key_dict`` -- building
    blocks shared by the per-paper modules.

Per-paper statistics live next to this module:
:mod:`neurobias.stats.federer2020` (learning-curve records) and
:mod:`neurobias.stats.safarani2021` (corruption robustness scores, their
bootstrap intervals, the per-model table and the two-factor regression).

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

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps

__all__ = [
    "TIDY_COLUMNS",
    "GROUP_KEYS",
    "SIGNIFICANCE_LEVELS",
    "summarise",
    "compare_to_baseline",
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
    "t",
    "df",
    "p",
    "significance",
)


def _describe(values: np.ndarray) -> tuple[float, float, float, int]:
    """mean, variance (ddof=1), sem, n -- NaN where undefined."""
    n = int(values.size)
    mean = float(values.mean()) if n else float("nan")
    var = float(values.var(ddof=1)) if n > 1 else float("nan")
    sem = float(np.sqrt(var / n)) if n > 1 else float("nan")
    return mean, var, sem, n


def compare_to_baseline(
    df: pd.DataFrame,
    baseline: str = "none",
    by: Sequence[str] = GROUP_KEYS,
    alternative: str = "greater",
) -> pd.DataFrame:
    r"""One-tailed Welch t-test of every arm against the baseline arm, per group.

    Within each group defined by ``by`` the ``value`` of each arm other than
    ``baseline`` (one value per seed) is compared with the baseline's values by
    :func:`scipy.stats.ttest_ind` with ``equal_var=False`` (Welch's test)::

        t  = (m_a - m_b) / sqrt(s_a**2/n_a + s_b**2/n_b)

        df = (s_a**2/n_a + s_b**2/n_b)**2
             / ( (s_a**2/n_a)**2/(n_a-1) + (s_b**2/n_b)**2/(n_b-1) )

    (Welch--Satterthwaite), with ``m`` the means, ``s**2`` the sample variances
    (ddof=1) and ``n`` the numbers of seeds of the arm (a) and the baseline
    (b).  With ``alternative="greater"`` (default) ``p = P(T_df >= t)``, i.e.
    the test asks whether the arm *beats* the baseline; an arm worse than the
    baseline gets p > 0.5.  ``"less"`` and ``"two-sided"`` are passed through.

    Parameters
    ----------
    df
        Tidy results with the ``by`` columns plus ``arm`` and ``value``.
    baseline
        Name of the reference arm (``"none"`` = unregularised model).
    by
        Columns that define one comparison cell; must not contain ``arm``.
    alternative
        ``"greater"``, ``"less"`` or ``"two-sided"``.

    Returns
    -------
    DataFrame with columns ``*by, arm, baseline, mean, sem, n, baseline_mean,
    baseline_sem, baseline_n, difference, t, df, p, significance``, one row per
    (group, non-baseline arm), sorted by ``by`` then ``arm``.
    ``difference = mean - baseline_mean``; ``significance`` is ``'**'`` for
    p < 0.001, ``'*'`` for p < 0.05, else ``''`` (Federer's marks).

    Small groups: if either the arm or the baseline has fewer than two
    non-NaN values in a group, ``t``, ``df`` and ``p`` are NaN and
    ``significance`` is ``''`` -- no exception is raised.  If both groups have
    zero variance the statistic is undefined and scipy's result (NaN or
    +/-inf) is passed through, with ``df`` NaN.  NaN values are dropped before
    testing.

    Raises
    ------
    ValueError
        If required columns are missing, ``alternative`` is invalid, the
        baseline arm is absent from the data or from a group that has other
        arms, or a (group, arm, seed) cell occurs more than once (that would
        silently count one seed as several replicates -- e.g. the same CSV
        concatenated twice).
    """
    by = _as_tuple(by)
    if "arm" in by:
        raise ValueError("compare_to_baseline: `by` must not contain 'arm'")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(
            f"compare_to_baseline: alternative must be 'greater', 'less' or "
            f"'two-sided', got {alternative!r}"
        )
    _require_columns(df, (*by, "arm", "value"), "compare_to_baseline")

    arms_present = set(df["arm"].dropna().unique())
    if baseline not in arms_present:
        raise ValueError(
            f"compare_to_baseline: baseline arm {baseline!r} is not in the data "
            f"(arms present: {sorted(map(str, arms_present))})"
        )

    if "seed" in df.columns:
        dup = df.duplicated(subset=[*by, "arm", "seed"], keep=False)
        if dup.any():
            example = df.loc[dup, [*by, "arm", "seed"]].iloc[0].to_dict()
            raise ValueError(
                f"compare_to_baseline: {int(dup.sum())} rows repeat a "
                f"(group, arm, seed) cell, e.g. {example}; each seed must be one "
                f"observation (deduplicate or average first)"
            )

    frame = df[[*by, "arm"]].assign(value=pd.to_numeric(df["value"], errors="raise"))
    frame = frame[frame["value"].notna()]

    rows: list[dict] = []
    for key, group in _groupby(frame, by):
        keys = _key_dict(by, key)
        arms = {a: g["value"].to_numpy(dtype=float) for a, g in group.groupby("arm", sort=True)}
        others = [a for a in arms if a != baseline]
        if not others:
            continue
        if baseline not in arms:
            raise ValueError(
                f"compare_to_baseline: baseline arm {baseline!r} has no values in "
                f"group {keys} (arms there: {sorted(map(str, arms))})"
            )
        b = arms[baseline]
        b_mean, b_var, b_sem, b_n = _describe(b)
        for arm in others:
            a = arms[arm]
            a_mean, a_var, a_sem, a_n = _describe(a)
            if a_n >= 2 and b_n >= 2:
                with np.errstate(divide="ignore", invalid="ignore"):
                    res = _sps.ttest_ind(a, b, equal_var=False, alternative=alternative)
                t, p = float(res.statistic), float(res.pvalue)
                dof = welch_df(a_var, a_n, b_var, b_n)
            else:
                t = p = dof = float("nan")
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
                    "difference": a_mean - b_mean,
                    "t": t,
                    "df": dof,
                    "p": p,
                    "significance": significance_mark(p),
                }
            )

    columns = [*by, *_COMPARE_RESULT_COLUMNS]
    out = pd.DataFrame(rows, columns=columns)
    out[["n", "baseline_n"]] = out[["n", "baseline_n"]].astype(int)
    return out.reset_index(drop=True)


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
