# Stage 6: robustness evaluations, one tidy CSV per (study, evaluation, arm) or, for the
# adversarial attacks (minutes per model on a GPU), per (study, evaluation, arm, seed).


def evaluation_cfg(evaluation):
    return lambda wc: study_cfg(wc.study)["evaluations"][evaluation]


# Li 2019 Fig. 4: one job per arm scores all its seeds on each noisy batch (drawn once per arm).
rule evaluate_gaussian_noise:
    input:
        models=seed_paths("results/train/{study}/{arm}/seed{seed}/model.pt"),
        test_split=dataset_split("test"),
    output:
        table="results/eval/{study}/gaussian_noise/{arm}.csv",
    wildcard_constraints:
        arm="[^/]+",
    params:
        study="{study}",
        arm="{arm}",
        seeds=study_seeds,
        noise_cfg=evaluation_cfg("gaussian_noise"),
        device=DEVICE,
    log:
        "logs/eval/{study}/gaussian_noise/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["evaluation"]
    script:
        JOB_SCRIPT


rule evaluate_adversarial:
    input:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        test_split=dataset_split("test"),
    output:
        table="results/eval/{study}/adversarial/{arm}/seed{seed}.csv",
        per_image="results/eval/{study}/adversarial/{arm}/seed{seed}_per_image.csv",
    params:
        study="{study}",
        arm="{arm}",
        seed=lambda wc: int(wc.seed),
        attack_cfg=evaluation_cfg("adversarial"),
        device=DEVICE,
    log:
        "logs/eval/{study}/adversarial/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["evaluation"]
    script:
        JOB_SCRIPT


# Safarani 2021: accuracy under the ImageNet-C corruptions x severities (TIN-TC), generated on the
# device with the same seed for every model; one job per arm scores all its seeds on each corrupted
# batch (the corruptions are made once per arm); per-image correctness for the bootstrap.
rule evaluate_corruptions:
    input:
        models=seed_paths("results/train/{study}/{arm}/seed{seed}/model.pt"),
        histories=seed_paths("results/train/{study}/{arm}/seed{seed}/history.csv"),
        test_split=dataset_split("test"),
    output:
        table="results/eval/{study}/corruptions/{arm}.csv",
        correct="results/eval/{study}/corruptions/{arm}_correct.npz",
    params:
        study="{study}",
        arm="{arm}",
        seeds=study_seeds,
        corruptions_cfg=lambda wc: rule_params.corruption_evaluation(study_cfg(wc.study)),
        device=DEVICE,
    log:
        "logs/eval/{study}/corruptions/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["evaluation"]
    script:
        JOB_SCRIPT


# Every other evaluation (a plugin's, declared generic): one job per arm scores all its seeds with
# the evaluation's declared builder on the first test images; the stats rule tests it and the
# figure_evaluation rule draws it, as for the built-in ones.
rule evaluate:
    input:
        models=seed_paths("results/train/{study}/{arm}/seed{seed}/model.pt"),
        test_split=dataset_split("test"),
    output:
        table="results/eval/{study}/{evaluation}/{arm}.csv",
    wildcard_constraints:
        arm="[^/]+",
        evaluation="|".join(s.name for s in evaluations() if s.generic) or "(?!)",
    params:
        study="{study}",
        arm="{arm}",
        evaluation="{evaluation}",
        seeds=study_seeds,
        evaluation_cfg=lambda wc: study_cfg(wc.study)["evaluations"][wc.evaluation],
        device=DEVICE,
    log:
        "logs/eval/{study}/{evaluation}/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["evaluation"]
    script:
        JOB_SCRIPT
