# Stage 7: statistics over seeds: per level, each arm vs the baseline and vs each control arm
# (one-tailed t-tests, paired over seeds or Welch, p adjusted per baseline: the study's `statistics`).


rule stats:
    input:
        tables=lambda wc: evaluation_tables(wc.study, wc.evaluation),
    output:
        summary="results/stats/{study}/{evaluation}_summary.csv",
        tests=report(
            "results/stats/{study}/{evaluation}_tests.csv",
            caption="../../report/statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    wildcard_constraints:
        # the built-in evaluations that write tidy tables (learning curves: rule stats_learning_curves)
        evaluation="|".join(s.name for s in evaluations() if s.tables and not s.generic) or "(?!)",
    params:
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        controls=lambda wc: study_cfg(wc.study)["control_arms"],
        statistics=lambda wc: study_cfg(wc.study)["statistics"],
    log:
        "logs/stats/{study}/{evaluation}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["statistics"]
    script:
        JOB_SCRIPT


# The same tests for a generic evaluation (a plugin's): what "better" means for its metrics is what
# it declares.
rule stats__evaluation:
    input:
        tables=lambda wc: evaluation_tables(wc.study, wc.evaluation),
    output:
        summary="results/stats/{study}/{evaluation}_summary.csv",
        tests=report(
            "results/stats/{study}/{evaluation}_tests.csv",
            caption="../../report/statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    wildcard_constraints:
        evaluation="|".join(s.name for s in evaluations() if s.generic) or "(?!)",
    params:
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        controls=lambda wc: study_cfg(wc.study)["control_arms"],
        statistics=lambda wc: study_cfg(wc.study)["statistics"],
        metrics_better=lambda wc: evaluations()[wc.evaluation].metrics,
    log:
        "logs/stats/{study}/{evaluation}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["statistics"]
    script:
        JOB_SCRIPT


def study_runs(study):
    """(arm, seed) of every model of a study, in the order of ``run_paths``."""
    return [(arm, seed) for arm in study_cfg(study)["arms"] for seed in study_cfg(study)["seeds"]]


def run_paths(pattern):
    return lambda wc: [pattern.format(study=wc.study, arm=arm, seed=seed) for arm, seed in study_runs(wc.study)]


# Federer 2020: the curves per fraction of corrupted labels and epoch (mean ± SEM), and at the final
# epoch each arm vs r = 0 (the baseline arm trained on the same labels), read straight from the
# training histories (no evaluation job).
rule stats_learning_curves:
    input:
        histories=run_paths("results/train/{study}/{arm}/seed{seed}/history.csv"),
    output:
        tidy="results/stats/{study}/learning_curves.csv",
        summary="results/stats/{study}/learning_curves_summary.csv",
        tests=report(
            "results/stats/{study}/learning_curves_tests.csv",
            caption="../../report/statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    params:
        study="{study}",
        runs=lambda wc: study_runs(wc.study),
        arms_cfg=lambda wc: rule_params.learning_curve_arms(study_cfg(wc.study)),
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        metrics=lambda wc: study_cfg(wc.study)["evaluations"]["learning_curves"].get("metrics"),
        statistics=lambda wc: study_cfg(wc.study)["statistics"],
    log:
        "logs/stats/{study}/learning_curves.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["statistics"]
    script:
        JOB_SCRIPT


# Safarani 2021: robustness scores relative to the baseline (overall and per corruption category),
# bootstrapped intervals, one row per model, and the 2-factor OLS over each batch-ratio pool.
rule stats_corruptions:
    input:
        tables=lambda wc: expand("results/eval/{study}/corruptions/{arm}.csv", study=wc.study,
                                 arm=study_cfg(wc.study)["arms"]),
        correct=lambda wc: expand("results/eval/{study}/corruptions/{arm}_correct.npz", study=wc.study,
                                  arm=study_cfg(wc.study)["arms"]),
    output:
        accuracy="results/stats/{study}/corruption_accuracy.csv",
        scores=report(
            "results/stats/{study}/robustness_scores.csv",
            caption="../../report/robustness_statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
        contrasts=report(
            "results/stats/{study}/robustness_scores_vs_controls.csv",
            caption="../../report/robustness_statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
        per_seed="results/stats/{study}/robustness_scores_per_seed.csv",
        models="results/stats/{study}/robustness_models.csv",
        regression=report(
            "results/stats/{study}/robustness_regression.csv",
            caption="../../report/robustness_statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    params:
        study="{study}",
        arms=lambda wc: list(study_cfg(wc.study)["arms"]),
        arms_cfg=lambda wc: rule_params.corruption_arms(study_cfg(wc.study)),
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        controls=lambda wc: study_cfg(wc.study)["control_arms"],
        bootstrap_cfg=lambda wc: study_cfg(wc.study)["evaluations"]["corruptions"]["bootstrap"],
        pools=lambda wc: rule_params.regression_pools(study_cfg(wc.study)),
    log:
        "logs/stats/{study}/corruptions.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["statistics"]
    script:
        JOB_SCRIPT
