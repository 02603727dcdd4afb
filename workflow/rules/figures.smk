# Stage 8: the papers' figures, PDF and PNG, each its own target.


rule figure_noise_robustness:
    input:
        summary="results/stats/{study}/gaussian_noise_summary.csv",
        tests="results/stats/{study}/gaussian_noise_tests.csv",
        test_split=dataset_split("test"),  # for chance level
    output:
        pdf="figures/{study}/noise_robustness.pdf",
        png=report(
            "figures/{study}/noise_robustness.png",
            caption="../../report/noise_robustness.rst",
            category="{study}",
            subcategory="Figures",
        ),
    params:
        study="{study}",
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        n_seeds=n_seeds,
        note=figure_note,
    log:
        "logs/figures/{study}/noise_robustness.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


rule figure_adversarial:
    input:
        tables=lambda wc: evaluation_tables(wc.study, "adversarial"),
        tests="results/stats/{study}/adversarial_tests.csv",
    output:
        pdf="figures/{study}/adversarial.pdf",
        png=report(
            "figures/{study}/adversarial.png",
            caption="../../report/adversarial.rst",
            category="{study}",
            subcategory="Figures",
        ),
    params:
        study="{study}",
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        n_seeds=n_seeds,
        note=figure_note,
    log:
        "logs/figures/{study}/adversarial.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


rule figure_federer:
    input:
        summary="results/stats/{study}/learning_curves_summary.csv",
        tests="results/stats/{study}/learning_curves_tests.csv",
    output:
        pdf="figures/{study}/{figure}.pdf",
        png=report(
            "figures/{study}/{figure}.png",
            caption="../../report/federer.rst",
            category="{study}",
            subcategory="Figures",
        ),
    wildcard_constraints:
        figure="federer_fig6|federer_fig7",
    params:
        figure="{figure}",
        study="{study}",
        roles=lambda wc: rule_params.federer_roles(study_cfg(wc.study)),
        architecture=lambda wc: study_cfg(wc.study)["model"]["architecture"],
        n_seeds=n_seeds,
        note=figure_note,
    log:
        "logs/figures/{study}/{figure}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


# Safarani 2021 Fig. 3: robustness per category (A), overall (B), robustness vs neural prediction
# across the batch-ratio pool (C).
rule figure_safarani_fig3:
    input:
        scores="results/stats/{study}/robustness_scores.csv",
        per_seed="results/stats/{study}/robustness_scores_per_seed.csv",
        models="results/stats/{study}/robustness_models.csv",
        regression="results/stats/{study}/robustness_regression.csv",
    output:
        pdf="figures/{study}/safarani_fig3{panel}.pdf",
        png=report(
            "figures/{study}/safarani_fig3{panel}.png",
            caption="../../report/safarani_fig3.rst",
            category="{study}",
            subcategory="Figures",
        ),
    wildcard_constraints:
        panel="a|b|c",
    params:
        panel="{panel}",
        study="{study}",
        arms=lambda wc: rule_params.hand_written_arms(study_cfg(wc.study)),
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        n_seeds=n_seeds,
        repetitions=lambda wc: study_cfg(wc.study)["evaluations"]["corruptions"]["bootstrap"]["repetitions"],
        note=figure_note,
    log:
        "logs/figures/{study}/safarani_fig3{panel}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


# Safarani 2021 Fig. 2: one test image under the corruptions where the MTL arm gains most, a median
# amount and least, with the baseline's and the MTL arm's predictions (first seed of each).
rule figure_safarani_fig2:
    input:
        accuracy="results/stats/{study}/corruption_accuracy.csv",
        models=lambda wc: [
            f"results/train/{wc.study}/{arm}/seed{study_cfg(wc.study)['seeds'][0]}/model.pt"
            for arm in dict.fromkeys(example_arms(study_cfg(wc.study)))
        ],
        test_split=dataset_split("test"),
    output:
        pdf="figures/{study}/safarani_fig2.pdf",
        png=report(
            "figures/{study}/safarani_fig2.png",
            caption="../../report/safarani_fig2.rst",
            category="{study}",
            subcategory="Figures",
        ),
    params:
        study="{study}",
        arms=lambda wc: list(example_arms(study_cfg(wc.study))),
        seed=lambda wc: study_cfg(wc.study)["seeds"][0],
        corruptions_cfg=lambda wc: rule_params.corruption_example(study_cfg(wc.study)),
        note=figure_note,
        device=DEVICE,
    log:
        "logs/figures/{study}/safarani_fig2.log",
    # a GPU job on a cluster: the example corruptions are made again on the evaluations' device, where
    # the random fields of noise, snow and elastic come from the device's generator (the figure shows
    # the very images that were scored)
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


# A generic evaluation's figure (a plugin's): its first declared metric against level, one line per
# arm, marks where an arm beats the baseline.
rule figure_evaluation:
    input:
        summary="results/stats/{study}/{evaluation}_summary.csv",
        tests="results/stats/{study}/{evaluation}_tests.csv",
    output:
        pdf="figures/{study}/{evaluation}.pdf",
        png=report(
            "figures/{study}/{evaluation}.png",
            caption="../../report/evaluation.rst",
            category="{study}",
            subcategory="Figures",
        ),
    wildcard_constraints:
        evaluation="|".join(s.name for s in evaluations() if s.generic) or "(?!)",
    params:
        study="{study}",
        evaluation="{evaluation}",
        metric=lambda wc: next(iter(evaluations()[wc.evaluation].metrics), "accuracy"),
        description=lambda wc: evaluations()[wc.evaluation].doc,
        baseline=lambda wc: study_cfg(wc.study)["baseline_arm"],
        n_seeds=n_seeds,
        note=figure_note,
    log:
        "logs/figures/{study}/{evaluation}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT
