# Stage 7: statistics over seeds: per level, each arm vs the baseline and vs each control arm
# (one-tailed Welch t-tests).


rule stats:
    input:
        lambda wc: expand(
            "results/eval/{study}/{evaluation}/{arm}/seed{seed}.csv",
            study=wc.study,
            evaluation=wc.evaluation,
            arm=study_cfg(wc.study)["arms"],
            seed=study_cfg(wc.study)["seeds"],
        ),
    output:
        summary="results/stats/{study}/{evaluation}_summary.csv",
        tests="results/stats/{study}/{evaluation}_tests.csv",
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
