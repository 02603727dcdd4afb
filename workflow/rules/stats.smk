# Stage 7: statistics over seeds: per level, each arm vs the baseline and vs each control arm
# (one-tailed Welch t-tests).


rule stats:
    input:
        lambda wc: evaluation_tables(wc.study, wc.evaluation),
    output:
        summary="results/stats/{study}/{evaluation}_summary.csv",
        tests=report(
            "results/stats/{study}/{evaluation}_tests.csv",
            caption="../../report/statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    wildcard_constraints:
        evaluation="(?!learning_curves)[a-z_]+",  # learning curves: rule stats_learning_curves
    params:
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        controls=lambda wc: study_cfg(wc.study).get("control_arms", []),
    log:
        "logs/stats/{study}/{evaluation}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/stats.py"


# Federer 2020: per fraction of corrupted labels and per epoch, each arm vs r = 0 (the baseline arm
# trained on the same labels), read straight from the training histories (no evaluation job).
rule stats_learning_curves:
    input:
        lambda wc: expand(
            "results/train/{study}/{arm}/seed{seed}/history.csv",
            study=wc.study,
            arm=study_cfg(wc.study)["arms"],
            seed=study_cfg(wc.study)["seeds"],
        ),
    output:
        tidy="results/stats/{study}/learning_curves.csv",
        summary="results/stats/{study}/learning_curves_summary.csv",
        tests=report(
            "results/stats/{study}/learning_curves_tests.csv",
            caption="../../report/statistics.rst",
            category="{study}",
            subcategory="Statistics",
        ),
    log:
        "logs/stats/{study}/learning_curves.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/stats_learning_curves.py"


# Safarani 2021: robustness scores relative to the baseline (overall and per corruption category),
# bootstrapped intervals, one row per model, and the 2-factor OLS over each batch-ratio pool.
rule stats_corruptions:
    input:
        csvs=lambda wc: expand(
            "results/eval/{study}/corruptions/{arm}.csv", study=wc.study, arm=study_cfg(wc.study)["arms"]
        ),
        correct=lambda wc: expand(
            "results/eval/{study}/corruptions/{arm}_correct.npz", study=wc.study, arm=study_cfg(wc.study)["arms"]
        ),
    output:
        accuracy="results/stats/{study}/corruption_accuracy.csv",
        scores=report(
            "results/stats/{study}/robustness_scores.csv",
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
    log:
        "logs/stats/{study}/corruptions.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/stats_corruptions.py"
