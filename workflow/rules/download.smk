# Stage 0: downloads, the only jobs that touch the network. Local rules: on a cluster they run
# where snakemake runs (login nodes have the network, compute nodes often do not). Each file is
# verified against its pinned checksum before anything parses it.


rule download:
    output:
        "results/downloads/{filename}",
    params:
        entry=lambda wc: download_entry(wc.filename),
    log:
        "logs/download/{filename}.log",
    localrule: True
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/download.py"


rule download_vgg19_weights:
    output:
        f"results/downloads/{VGG19_FILE}",
    log:
        "logs/download/vgg19_weights.log",
    localrule: True
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/download_vgg19_weights.py"
