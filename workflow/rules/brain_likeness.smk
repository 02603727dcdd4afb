# Stage 9: brain-likeness vs robustness across every trained model (Dapello et al. 2020; Geirhos et
# al. 2018). One job per (study, arm) scores all its seeds: V1 explained variance of candidate
# layers, white-box PGD accuracy, accuracy and response entropy under image manipulations; then one
# table of all models with the correlations, and the figures.


def bl_studies():
    return config["brain_likeness"].get("studies") or STUDIES  # studies_to_run limits it too


def bl_recordings(study):
    """The study's own recording first, then the extra ones the config names."""
    names = [study_cfg(study)["recording"]] + list(config["brain_likeness"].get("recordings", []))
    return list(dict.fromkeys(names))


def bl_layers(study):
    """Candidate layers of the study's architecture (``brain_likeness.layers``, else the defaults)."""
    architecture = study_cfg(study)["model"]["architecture"]
    return config["brain_likeness"].get("layers", {}).get(architecture) or list(default_ev_layers(architecture))


rule brain_likeness:
    input:
        models=seed_paths("results/train/{study}/{arm}/seed{seed}/model.pt"),
        test_split=dataset_split("test"),
        recordings=lambda wc: [f"results/neural/{r}/recording.npz" for r in bl_recordings(wc.study)],
    output:
        table="results/brain_likeness/{study}/{arm}.csv",
    params:
        study="{study}",
        arm="{arm}",
        seeds=study_seeds,
        recording_names=lambda wc: bl_recordings(wc.study),
        layers=lambda wc: bl_layers(wc.study),
        brain_likeness_cfg=lambda wc: rule_params.brain_likeness_settings(config),
        device=DEVICE,
    log:
        "logs/brain_likeness/{study}/{arm}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["evaluation"]
    script:
        JOB_SCRIPT


rule brain_likeness_analysis:
    input:
        brain=lambda wc: [f"results/brain_likeness/{s}/{a}.csv" for s in bl_studies() for a in study_cfg(s)["arms"]],
        noise=lambda wc: [
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
    params:
        architectures=lambda wc: {s: study_cfg(s)["model"]["architecture"] for s in bl_studies()},
    log:
        "logs/brain_likeness/analysis.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["statistics"]
    script:
        JOB_SCRIPT


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
    params:
        # the first analysed study's own recording (every study's own one is scored)
        recording=lambda wc: study_cfg(bl_studies()[0])["recording"],
        notes=lambda wc: [study_cfg(s)["figure_note"] for s in bl_studies()],
    log:
        "logs/figures/brain_likeness/dapello_fig1.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT


rule figure_geirhos:
    input:
        tables=lambda wc: [f"results/brain_likeness/{wc.study}/{a}.csv" for a in study_cfg(wc.study)["arms"]],
        test_split=dataset_split("test"),  # number of classes
    output:
        pdf="figures/{study}/geirhos_fig3.pdf",
        png=report(
            "figures/{study}/geirhos_fig3.png",
            caption="../../report/geirhos_fig3.rst",
            category="{study}",
            subcategory="Figures",
        ),
    params:
        study="{study}",
        n_seeds=n_seeds,
        note=figure_note,
    log:
        "logs/figures/{study}/geirhos_fig3.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["figures"]
    script:
        JOB_SCRIPT
