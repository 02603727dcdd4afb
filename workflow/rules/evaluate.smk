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
