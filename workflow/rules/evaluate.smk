# Stage 6: robustness evaluations, one tidy CSV per (study, evaluation, arm) or, for the
# adversarial attacks (minutes per model on a GPU), per (study, evaluation, arm, seed).


# Li 2019 Fig. 4: one job per arm scores all its seeds on each noisy batch (drawn once per arm).
rule evaluate_gaussian_noise:
    input:
        models=lambda wc: expand(
            "results/train/{study}/{arm}/seed{seed}/model.pt", study=wc.study, arm=wc.arm,
            seed=study_cfg(wc.study)["seeds"],
        ),
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
    output:
        "results/eval/{study}/gaussian_noise/{arm}.csv",
    wildcard_constraints:
        arm="[^/]+",
    params:
        cfg=lambda wc: study_cfg(wc.study)["evaluations"]["gaussian_noise"],
        seeds=lambda wc: study_cfg(wc.study)["seeds"],
    log:
        "logs/eval/{study}/gaussian_noise/{arm}.log",
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
# device with the same seed for every model; one job per arm scores all its seeds on each corrupted
# batch (the corruptions are made once per arm); per-image correctness for the bootstrap.
rule evaluate_corruptions:
    input:
        models=lambda wc: expand(
            "results/train/{study}/{arm}/seed{seed}/model.pt", study=wc.study, arm=wc.arm,
            seed=study_cfg(wc.study)["seeds"],
        ),
        histories=lambda wc: expand(
            "results/train/{study}/{arm}/seed{seed}/history.csv", study=wc.study, arm=wc.arm,
            seed=study_cfg(wc.study)["seeds"],
        ),
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
    output:
        csv="results/eval/{study}/corruptions/{arm}.csv",
        correct="results/eval/{study}/corruptions/{arm}_correct.npz",
    params:
        cfg=lambda wc: study_cfg(wc.study)["evaluations"]["corruptions"],
        seeds=lambda wc: study_cfg(wc.study)["seeds"],
    log:
        "logs/eval/{study}/corruptions/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/evaluate_corruptions.py"
