# Stage 9: brain-likeness vs robustness across every trained model (Dapello et al. 2020; Geirhos et
# al. 2018). One job per (study, arm) scores all its seeds: V1 explained variance of candidate
# layers, white-box PGD accuracy, accuracy and response entropy under image manipulations; then one
# table of all models with the correlations, and the figures.


def bl_params():
    return config.get("brain_likeness", {})


def bl_studies():
    return bl_params().get("studies") or STUDIES  # studies_to_run limits it too


def bl_recordings(study):
    """The study's own recording first, then the extra ones the config names."""
    names = [study_cfg(study)["recording"]] + list(bl_params().get("recordings", []))
    return list(dict.fromkeys(names))


rule brain_likeness:
    input:
        models=lambda wc: expand(
            "results/train/{study}/{arm}/seed{seed}/model.pt",
            study=wc.study,
            arm=wc.arm,
            seed=study_cfg(wc.study)["seeds"],
        ),
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",
        recordings=lambda wc: [f"results/neural/{r}/recording.npz" for r in bl_recordings(wc.study)],
    output:
        "results/brain_likeness/{study}/{arm}.csv",
    params:
        cfg=lambda wc: bl_params(),
        recordings=lambda wc: bl_recordings(wc.study),
    log:
        "logs/brain_likeness/{study}/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/brain_likeness.py"


rule brain_likeness_analysis:
    input:
        brain=[f"results/brain_likeness/{s}/{a}.csv" for s in bl_studies() for a in study_cfg(s)["arms"]],
        noise=[
            table
            for s in bl_studies()
            if "gaussian_noise" in study_cfg(s)["evaluations"]
            for table in evaluation_tables(s, "gaussian_noise")
        ],
    output:
        models="results/brain_likeness/models.csv",
        correlations=report(
            "results/brain_likeness/correlations.csv",
            caption="../../report/brain_likeness_correlations.rst",
            category="brain-likeness vs robustness",
        ),
    log:
        "logs/brain_likeness/analysis.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/brain_likeness_analysis.py"


rule figure_dapello:
    input:
        models="results/brain_likeness/models.csv",
        correlations="results/brain_likeness/correlations.csv",
    output:
        pdf="figures/brain_likeness/dapello_fig1.pdf",
        png=report(
            "figures/brain_likeness/dapello_fig1.png",
            caption="../../report/dapello_fig1.rst",
            category="brain-likeness vs robustness",
        ),
    log:
        "logs/figures/brain_likeness/dapello_fig1.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/figure_dapello.py"


rule figure_geirhos:
    input:
        csvs=lambda wc: [f"results/brain_likeness/{wc.study}/{a}.csv" for a in study_cfg(wc.study)["arms"]],
        test=lambda wc: f"results/data/{study_cfg(wc.study)['dataset']}/test.pt",  # number of classes
    output:
        pdf="figures/{study}/geirhos_fig3.pdf",
        png=report(
            "figures/{study}/geirhos_fig3.png",
            caption="../../report/geirhos_fig3.rst",
            category="{study}",
            subcategory="Figures",
        ),
    log:
        "logs/figures/{study}/geirhos_fig3.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/figure_geirhos.py"
