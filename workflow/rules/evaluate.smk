# Stage 6: robustness evaluations, one tidy CSV per (study, evaluation, arm, seed).


rule evaluate_gaussian_noise:
    input:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
    output:
        "results/eval/{study}/gaussian_noise/{arm}/seed{seed}.csv",
    params:
        cfg=lambda wc: study_cfg(wc.study)["evaluations"]["gaussian_noise"],
    log:
        "logs/eval/{study}/gaussian_noise/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/evaluate_gaussian_noise.py"


rule evaluate_adversarial:
    input:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
    output:
        "results/eval/{study}/adversarial/{arm}/seed{seed}.csv",
    params:
        cfg=lambda wc: study_cfg(wc.study)["evaluations"]["adversarial"],
    log:
        "logs/eval/{study}/adversarial/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/evaluate_adversarial.py"


# Safarani 2021: accuracy under the ImageNet-C corruptions x severities (TIN-TC), generated on the
# device with the same seed for every model; per-image correctness for the bootstrap.
rule evaluate_corruptions:
    input:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        history="results/train/{study}/{arm}/seed{seed}/history.csv",
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
    output:
        csv="results/eval/{study}/corruptions/{arm}/seed{seed}.csv",
        correct="results/eval/{study}/corruptions/{arm}/seed{seed}_correct.npz",
    params:
        cfg=lambda wc: study_cfg(wc.study)["evaluations"]["corruptions"],
    log:
        "logs/eval/{study}/corruptions/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/evaluate_corruptions.py"
