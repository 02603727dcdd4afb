# Stage 8: the papers' figures, PDF and PNG, each its own target.


rule figure_noise_robustness:
    input:
        summary="results/stats/{study}/gaussian_noise_summary.csv",
        tests="results/stats/{study}/gaussian_noise_tests.csv",
        test_split=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",  # for chance level
    output:
        pdf="figures/{study}/noise_robustness.pdf",
        png=report(
            "figures/{study}/noise_robustness.png",
            caption="../../report/noise_robustness.rst",
            category="{study}",
            subcategory="Figures",
        ),
    log:
        "logs/figures/{study}/noise_robustness.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/figure_noise_robustness.py"


rule figure_adversarial:
    input:
        csvs=lambda wc: expand(
            "results/eval/{study}/adversarial/{arm}/seed{seed}.csv",
            study=wc.study,
            arm=study_cfg(wc.study)["arms"],
            seed=study_cfg(wc.study)["seeds"],
        ),
        tests="results/stats/{study}/adversarial_tests.csv",
    output:
        pdf="figures/{study}/adversarial.pdf",
        png=report(
            "figures/{study}/adversarial.png",
            caption="../../report/adversarial.rst",
            category="{study}",
            subcategory="Figures",
        ),
    log:
        "logs/figures/{study}/adversarial.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/figure_adversarial.py"


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
    log:
        "logs/figures/{study}/{figure}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/figure_federer.py"
