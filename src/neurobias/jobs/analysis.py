"""The analysis jobs: statistics over seeds (:func:`stats`, :func:`stats_learning_curves`,
:func:`stats_corruptions`), the brain-likeness analysis across all models, and the papers'
figures. The statistics themselves are the pure functions of :mod:`neurobias.stats`; these jobs
read the evaluation tables, call them and write the results.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import resolve_device
from ..provenance import write_provenance
from .atomic import write_csv


# -- statistics and figures -----------------------------------------------------------------------
def stats(*, tables: list, summary, tests, baseline: str, controls: list, statistics: dict,
          metrics_better: dict | None = None) -> None:
    """Summary per arm and level; every arm vs the baseline, and vs each control arm (e.g. the
    regulariser arms vs Shuffle: does the real target beat a target with the same statistics?).
    The ``baseline`` column of the tests table says which comparison a row is; each baseline's rows
    are one family for the multiple-comparison correction. statistics: the study's ``statistics``
    (``test``: paired | welch, ``correction``: holm | bh | none). Bookkeeping metrics (the number
    of attacked images) are summarised, not tested. metrics_better: what "better" means for the
    metrics a plugin's evaluation declares, beside the built-in ones
    (:data:`neurobias.stats.METRIC_BETTER`)."""
    from ..stats import BOOKKEEPING_METRICS, METRIC_BETTER, compare_to_baseline, summarise
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    write_csv(summarise(tidy), summary)
    outcomes = tidy[~tidy["metric"].isin(BOOKKEEPING_METRICS)]
    better = {**METRIC_BETTER, **(metrics_better or {})}
    comparisons = [compare_to_baseline(outcomes, baseline=b, better=better, test=statistics["test"],
                                       correction=statistics["correction"]) for b in [baseline, *controls]]
    write_csv(pd.concat(comparisons, ignore_index=True), tests)
    write_provenance(Path(tests).parent, job="stats", filename=f"provenance_{Path(tests).stem}.json",
                     config_slice={"baseline": baseline, "controls": list(controls), "statistics": dict(statistics),
                                   "inputs": [str(p) for p in tables]}, started=started)


def tidy_arm(arm_name: str, arm: dict) -> str:
    """The arm a model is shown as: a label-noise sweep's copy is its base arm at another level."""
    from ..config import sweep_arm_name
    base = arm.get("sweep_of")
    if base and "label_noise" in arm and arm_name == sweep_arm_name(base, "label_noise", arm["label_noise"]):
        return base
    return arm_name


def stats_learning_curves(*, histories: list, tidy, summary, tests, study: str, runs: list, arms_cfg: dict,
                          baseline: str, metrics: list | None, statistics: dict) -> None:
    """Federer et al. 2020's statistics: the curves as mean ± SEM per fraction of corrupted labels,
    epoch and arm (descriptive), and at the final epoch each arm vs the r = 0 arm (the baseline)
    trained on the same labels (:func:`neurobias.stats.final_epoch_tests`: one-tailed in the
    direction that is better, ``statistics.test`` paired over seeds or Welch, p adjusted by
    ``statistics.correction`` over the whole table).
    runs: the (arm, seed) of each history, in order; arms_cfg: :func:`neurobias.rule_params.learning_curve_arms`."""
    from ..stats import GROUP_KEYS, final_epoch_tests, learning_curve_records, summarise
    started = time.time()
    if len(runs) != len(histories):
        raise ValueError(f"stats_learning_curves: {len(histories)} histories for {len(runs)} (arm, seed) runs")
    frames = []
    for (arm_name, seed), path in sorted(zip(map(tuple, runs), histories)):
        arm = arms_cfg[arm_name]
        kw = {"metrics": metrics} if metrics else {}
        frames.append(learning_curve_records(pd.read_csv(path), study=study, arm=tidy_arm(arm_name, arm),
                                             seed=seed, label_noise=arm.get("label_noise", 0.0),
                                             r=arm.get("r", 0.0) if arm["regulariser"] == "rsm" else 0.0, **kw))
    records = pd.concat(frames, ignore_index=True)
    write_csv(records, tidy)
    by = (*GROUP_KEYS, "epoch")
    per_arm = summarise(records, by=(*by, "arm"))
    r_of = records.groupby("arm")["r"].first()
    per_arm["r"] = per_arm["arm"].map(r_of)
    write_csv(per_arm, summary)
    comparisons = final_epoch_tests(records, baseline=baseline, test=statistics["test"],
                                    correction=statistics["correction"])
    comparisons["r"] = comparisons["arm"].map(r_of)
    write_csv(comparisons, tests)
    write_provenance(Path(tests).parent, job="stats_learning_curves", filename="provenance_learning_curves.json",
                     config_slice={"baseline": baseline, "runs": [list(r) for r in runs], "metrics": metrics,
                                   "statistics": dict(statistics), "inputs": sorted(str(p) for p in histories)},
                     started=started)


def _significance_note(tests: pd.DataFrame, versus: str = "baseline", metrics=None) -> str:
    """The marks and the test that made them, worded from the tests table itself."""
    from ..stats import describe_tests
    return f"* p < 0.05, ** p < 0.001 ({describe_tests(tests, versus, metrics)})."


def figure_adversarial(*, tables: list, tests, pdf, png, study: str, baseline: str, n_seeds: int, note: str) -> None:
    from ..figures import FIGURES
    from ..figures.adversarial import METRICS
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    tidy = tidy[tidy["metric"].isin(METRICS)]
    comparisons = pd.read_csv(tests)
    comparisons = comparisons[comparisons["baseline"] == baseline]  # stars: each arm vs the baseline
    caption = note + f" n = {n_seeds} seeds per arm; median minimal " \
        "perturbation (Foolbox FMN) per model; bars mean ± SEM; " + \
        _significance_note(comparisons, metrics=METRICS)
    FIGURES["adversarial"](tidy, comparisons, title=f"{study}: minimal adversarial perturbation",
                           note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_adversarial", filename="provenance_adversarial.json",
                     config_slice={"study": study, "baseline": baseline, "n_seeds": n_seeds}, started=started)


def figure_noise_robustness(*, summary, tests, test_split, pdf, png, study: str, baseline: str, n_seeds: int,
                            note: str) -> None:
    from ..data import load_split
    from ..figures import FIGURES
    started = time.time()
    chance = 1.0 / len(load_split(test_split)[2])
    comparisons = pd.read_csv(tests)
    comparisons = comparisons[comparisons["baseline"] == baseline]  # stars: each arm vs the baseline
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; " + _significance_note(comparisons)
    FIGURES["noise_robustness"](pd.read_csv(summary), comparisons,
                                title=f"{study}: accuracy under Gaussian noise",
                                note=caption.strip(), out_pdf=pdf, out_png=png, chance=chance)
    write_provenance(Path(pdf).parent, job="figure_noise_robustness", filename="provenance_noise_robustness.json",
                     config_slice={"study": study, "baseline": baseline, "n_seeds": n_seeds}, started=started)


def figure_evaluation(*, summary, tests, pdf, png, study: str, evaluation: str, metric: str, description: str,
                      baseline: str, n_seeds: int, note: str) -> None:
    """A generic evaluation's figure (a plugin's): ``metric`` (its first declared metric) against
    level, one line per arm (per arm and condition where it has several conditions), marks where
    an arm beats the baseline."""
    from ..figures import FIGURES
    started = time.time()
    table = pd.read_csv(summary)
    table = table[table["metric"] == metric]
    if table.empty:
        raise ValueError(f"figure_evaluation: {summary} has no rows of the metric {metric!r}")
    comparisons = pd.read_csv(tests)
    comparisons = comparisons[(comparisons["baseline"] == baseline) & (comparisons["metric"] == metric)]
    if table["condition"].nunique() > 1:  # one line per arm and condition
        for frame in (table, comparisons):
            frame["arm"] = frame["arm"] + " (" + frame["condition"].astype(str) + ")"
    caption = note + f" {description}; n = {n_seeds} seeds per arm; mean ± SEM; " + \
        _significance_note(comparisons)
    FIGURES["noise_robustness"](table, comparisons, title=f"{study}: {evaluation}", note=caption.strip(),
                                out_pdf=pdf, out_png=png, ylabel=metric.replace("_", " "), xlabel="Level")
    write_provenance(Path(pdf).parent, job="figure_evaluation", filename=f"provenance_{evaluation}.json",
                     config_slice={"study": study, "evaluation": evaluation, "metric": metric, "baseline": baseline,
                                   "n_seeds": n_seeds}, started=started)


def figure_federer(*, summary, tests, pdf, png, figure: str, study: str, roles: dict, architecture: str,
                   n_seeds: int, note: str) -> None:
    """Fig. 6 or Fig. 7 of Federer et al. 2020 (``figure``: federer_fig6 | federer_fig7);
    roles: :func:`neurobias.rule_params.federer_roles`. Curves are mean ± SEM (descriptive); the
    marks come from the final-epoch tests."""
    from ..figures import FIGURES
    started = time.time()
    comparisons = pd.read_csv(tests)
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; marks at the final epoch only: " + \
        _significance_note(comparisons, "r = 0 on the same labels")
    label = {"federer_fig6": "Fig. 6: neural data and corrupted labels",
             "federer_fig7": "Fig. 7: teacher variants and r"}[figure]
    FIGURES[figure](pd.read_csv(summary), comparisons, roles=roles,
                    title=f"{study} ({architecture}): {label}",
                    note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job=f"figure_{figure}", filename=f"provenance_{figure}.json",
                     config_slice={"study": study, "n_seeds": n_seeds, "roles": roles}, started=started)


# -- brain-likeness vs robustness (Dapello et al. 2020, Geirhos et al. 2018) -------------------------
def brain_likeness_analysis(*, brain: list, noise: list, models, correlations, architectures: dict) -> None:
    """The table of all models and the correlations of V1 explained variance with each robustness
    measure (Pearson r, p, n), across all models and within each study
    (:mod:`neurobias.stats.brain_likeness`). architectures: {study: architecture}."""
    from ..stats.brain_likeness import model_correlations, model_table
    started = time.time()
    table = model_table([pd.read_csv(p) for p in brain], architectures, [pd.read_csv(p) for p in noise])
    write_csv(table, models)
    write_csv(model_correlations(table), correlations)
    write_provenance(Path(models).parent, job="brain_likeness_analysis", filename="provenance_analysis.json",
                     config_slice={"architectures": architectures, "inputs": [str(p) for p in [*brain, *noise]]},
                     started=started)


def figure_dapello(*, models, correlations, pdf, png, recording: str, notes: list[str]) -> None:
    """Dapello Fig. 1 over every analysed model, against V1 explained variance on ``recording``
    (the first analysed study's own; every study's own one is scored)."""
    from ..figures import FIGURES
    started = time.time()
    table, corr = pd.read_csv(models), pd.read_csv(correlations)
    x = f"v1_ev_{recording}"
    caption = " ".join(sorted(set(notes) - {""})) + f" One point per trained model (n = {len(table)}); " \
        "line: least squares; r, p: Pearson across models."
    FIGURES["dapello_fig1"](table, corr, x=x, title="Brain-likeness vs robustness (after Dapello et al. 2020, Fig. 1)",
                            note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_dapello", filename="provenance_dapello_fig1.json",
                     config_slice={"x": x, "models": len(table)}, started=started)


def figure_geirhos(*, tables: list, test_split, pdf, png, study: str, n_seeds: int, note: str) -> None:
    from ..data import load_split
    from ..figures import FIGURES
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    n_classes = len(load_split(test_split)[2])  # entropy's maximum is log2 of it
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; " \
        "entropy of the distribution of responses over classes (Geirhos et al. 2018)."
    FIGURES["geirhos_fig3"](tidy, n_classes=n_classes,
                            title=f"{study}: image manipulations (after Geirhos et al. 2018, Fig. 3)",
                            note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_geirhos", filename="provenance_geirhos_fig3.json",
                     config_slice={"study": study, "n_seeds": n_seeds}, started=started)


# -- Safarani 2021: corruption robustness ---------------------------------------------------------
def safarani_arms_table(arms_cfg: dict) -> pd.DataFrame:
    """arm, base_arm (the arm a batch-ratio sweep copied, else itself), batch_ratio (NaN without MTL)."""
    return pd.DataFrame([{"arm": name, "base_arm": arm.get("sweep_of") or name,
                          "batch_ratio": float(arm["batch_ratio"]) if arm["regulariser"] == "mtl" else float("nan")}
                         for name, arm in arms_cfg.items()])


def _load_correct(npz_paths: dict) -> tuple[dict, list[tuple[str, int]]]:
    """{(arm, seed): correct [conditions, images]} and the conditions, from one file per arm."""
    correct, conditions = {}, None
    for arm, path in npz_paths.items():
        with np.load(path) as z:
            for seed, c in zip(z["seeds"].tolist(), z["correct"]):
                correct[(arm, int(seed))] = c
            conds = list(zip(z["corruption"].tolist(), z["severity"].tolist()))
        if conditions is not None and conds != conditions:
            raise ValueError(f"{path}: evaluated under other conditions than the other models")
        conditions = conds
    return correct, conditions


def stats_corruptions(*, tables: list, correct: list, accuracy, scores, contrasts, per_seed, models, regression,
                      study: str, arms: list[str], arms_cfg: dict, baseline: str, controls: list[str],
                      bootstrap_cfg: dict, pools: list[str]) -> None:
    """Safarani 2021's statistics: accuracy per arm x corruption x severity (mean, SEM over seeds);
    robustness scores relative to the baseline, overall and per category, with bootstrapped
    intervals (test images resampled in pairs across models, and each arm's seeds); the same
    scores relative to each control arm (``contrasts``, column ``reference``: e.g. MTL-monkey over
    MTL-shuffled, whose interval excluding 1 says the V1 targets matter beyond the second task);
    per-seed scores; one row per model; the 2-factor OLS of robustness on neural prediction
    performance and clean accuracy over each batch-ratio pool (``pools``). correct: per-image
    correctness of each arm's seeds, one file per arm in ``arms`` order; arms_cfg:
    :func:`neurobias.rule_params.corruption_arms`."""
    from ..robustness.corruptions import CATEGORIES
    from ..stats import (bootstrap_robustness, model_robustness_table, robustness_scores_per_seed, summarise,
                        two_factor_regression)
    started = time.time()
    if len(arms) != len(correct):
        raise ValueError(f"stats_corruptions: {len(correct)} correctness files for {len(arms)} arms")
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    write_csv(summarise(tidy[tidy["metric"] == "accuracy"],
                         by=("study", "evaluation", "condition", "category", "level", "metric", "arm")), accuracy)
    per_image, conditions = _load_correct(dict(zip(arms, correct)))

    def scores_against(reference: str) -> pd.DataFrame:
        return bootstrap_robustness(per_image, conditions, reference, CATEGORIES,
                                    repetitions=bootstrap_cfg["repetitions"], seed=bootstrap_cfg["seed"],
                                    study=study)

    against_baseline = scores_against(baseline)
    write_csv(against_baseline, scores)
    # the same image and seed draws for every reference (one seeded generator per call)
    against_controls = [scores_against(c).assign(reference=c) for c in controls]
    write_csv(pd.concat(against_controls, ignore_index=True) if against_controls
               else pd.DataFrame(columns=[*against_baseline.columns, "reference"]), contrasts)
    write_csv(robustness_scores_per_seed(tidy, baseline, CATEGORIES), per_seed)
    table = model_robustness_table(tidy, safarani_arms_table(arms_cfg), baseline, CATEGORIES)
    write_csv(table, models)
    fitted = two_factor_regression(table[table["pool"].isin(pools)], by=("pool",))
    write_csv(fitted, regression)
    print(fitted.to_string())
    write_provenance(Path(scores).parent, job="stats_corruptions", filename="provenance_corruptions.json",
                     config_slice={"baseline": baseline, "controls": list(controls), "bootstrap": bootstrap_cfg,
                                   "pools": pools}, started=started)


def figure_arms(arms: list[str]) -> list[str]:
    """The arms in Safarani's order where the names are his, else in the config's order."""
    from ..figures.safarani import SAFARANI_ARMS
    return sorted(arms, key=lambda a: (SAFARANI_ARMS.index(a) if a in SAFARANI_ARMS else len(SAFARANI_ARMS),
                                       arms.index(a)))


def figure_safarani_fig3(*, scores, per_seed, models, regression, pdf, png, panel: str, study: str, arms: list[str],
                         baseline: str, n_seeds: int, repetitions: int, note: str) -> None:
    """Fig. 3A (per category), 3B (overall) or 3C (robustness vs neural prediction); arms:
    the hand-written arms (no sweep copies); repetitions: the bootstrap's, for the caption."""
    from ..figures import FIGURES
    started = time.time()
    if panel in ("a", "b"):
        score_table = pd.read_csv(scores)
        level = int(round(100 * float(score_table["level"].iloc[0]))) if "level" in score_table and len(score_table) else 95
        note += (f" Robustness score: mean over corruptions of accuracy (mean over severities and {n_seeds} seeds) "
                 f"relative to {baseline}; bars: {level} % bootstrap intervals "
                 f"({repetitions} resamples of test images and seeds); dots: single seeds.")
        FIGURES[f"safarani_fig3{panel}"](score_table, score_table, per_seed=pd.read_csv(per_seed), arms=figure_arms(arms),
                                         title=f"{study}: robustness {'per category' if panel == 'a' else 'overall'}",
                                         note=note.strip(), out_pdf=pdf, out_png=png)
    else:
        fitted = pd.read_csv(regression)
        pools = list(dict.fromkeys(fitted["pool"])) if len(fitted) else []
        note += (" One point per model (batch-ratio sweep x seeds); line: OLS robustness ~ neural prediction + "
                 "clean accuracy, drawn at the pool's mean clean accuracy.")
        FIGURES["safarani_fig3c"](pd.read_csv(models), fitted, pools=pools,
                                  title=f"{study}: robustness vs neural prediction",
                                  note=note.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job=f"figure_safarani_fig3{panel}",
                     filename=f"provenance_safarani_fig3{panel}.json",
                     config_slice={"study": study, "n_seeds": n_seeds}, started=started)


def figure_safarani_fig2(*, accuracy, models: list, test_split, pdf, png, study: str, arms: list[str], seed: int,
                         corruptions_cfg: dict, note: str, device: str = "cpu") -> None:
    """Fig. 2: corruptions ranked by the MTL arm's accuracy relative to the baseline (mean over
    severities and seeds); for the best, median and worst one, a test image that both networks
    classify correctly when clean, clean and at ``example_severity`` (the very image the evaluation
    used), with both networks' predictions (seed ``seed``). arms: (baseline arm, MTL arm) as
    :func:`neurobias.config.example_arms` picks them; models: their model.pt (one if they are the
    same arm)."""
    import torch

    from ..data import load_split
    from ..figures import FIGURES
    from ..figures.safarani import select_example_corruptions
    from ..models.io import load_classifier
    from ..robustness.corruption_accuracy import corrupted_batch
    started = time.time()
    device = resolve_device(device)
    spec = corruptions_cfg
    base, mtl = arms
    shown = list(dict.fromkeys((base, mtl)))
    if len(models) != len(shown):
        raise ValueError(f"figure_safarani_fig2: {len(models)} models for the arms {shown}")
    acc = pd.read_csv(accuracy)
    acc = acc[(acc["metric"] == "accuracy") & (acc["condition"] != "clean")]
    per = acc.groupby(["arm", "condition"])["mean"].mean().unstack("arm")
    ratios = (per[mtl] / per[base]).replace([np.inf, -np.inf], np.nan).dropna()
    chosen = select_example_corruptions(ratios)
    images, labels, classes = load_split(test_split)
    n = spec.get("n_images") or len(images)
    images, labels = images[:n], labels[:n]
    networks = {arm: load_classifier(path, device) for arm, path in zip(shown, models)}
    batch = spec["batch_size"]
    with torch.no_grad():
        clean_pred = {a: torch.cat([m(images[i:i + batch].to(device).float() / 255).argmax(1).cpu()
                                    for i in range(0, n, batch)]) for a, m in networks.items()}
    both_right = torch.ones(n, dtype=torch.bool)
    for p in clean_pred.values():
        both_right &= p == labels
    index = int(torch.nonzero(both_right)[0]) if both_right.any() else 0
    severity = spec["example_severity"]
    start = index - index % batch  # regenerate the evaluation's batch, so the image is the one scored
    rows = []
    for row, corruption in chosen.items():
        x = corrupted_batch(images[start:min(start + batch, n)].to(device), spec["corruptions"], corruption, severity,
                            spec["seed"], start)[index - start:index - start + 1]
        record = {"row": row, "corruption": corruption, "severity": severity, "ratio": float(ratios[corruption]),
                  "label": classes[int(labels[index])], "clean_image": images[index].numpy(),
                  "corrupted_image": x[0].cpu().numpy()}
        with torch.no_grad():
            for arm, m in networks.items():
                record[f"{arm}_clean"] = classes[int(clean_pred[arm][index])]
                record[f"{arm}_corrupted"] = classes[int(m(x.float() / 255).argmax(1))]
        rows.append(record)
    caption = (note + f" Test image {index}; corruptions where {mtl} gains most, a median "
               f"amount and least relative to {base} (accuracy ratio, mean over severities and seeds); severity "
               f"{severity}; predictions of seed {seed}.").strip()
    FIGURES["safarani_fig2"](rows, arms=tuple(shown), title=f"{study}: example corruptions",
                             note=caption, out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_safarani_fig2", filename="provenance_safarani_fig2.json",
                     config_slice={"study": study, "arms": [base, mtl], "image": index,
                                   "corruptions": chosen}, device=device, started=started)
