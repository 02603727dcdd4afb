# Stage 0: downloads, the only jobs that touch the network. Local rules: on a cluster they run
# where snakemake runs (login nodes have the network, compute nodes often do not). Each file is
# verified against its pinned checksum before anything parses it.


rule download:
    output:
        archive="results/downloads/{filename}",
    params:
        config_key=lambda wc: download_entry(wc.filename)[0],
        entry=lambda wc: download_entry(wc.filename)[1],
    log:
        "logs/download/{filename}.log",
    localrule: True
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["data"]
    script:
        JOB_SCRIPT


rule download_vgg19_weights:
    output:
        weights=f"results/downloads/{VGG19_FILE}",
    log:
        "logs/download/vgg19_weights.log",
    localrule: True
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["data"]
    script:
        JOB_SCRIPT
