# Stage 1: datasets in the prepared tensor format (results/data/{dataset}/{split}.pt).


rule make_dataset:
    input:
        archive=lambda wc: archive_of("datasets", wc.dataset),
    output:
        train="results/data/{dataset}/train.pt",
        val="results/data/{dataset}/val.pt",
        test="results/data/{dataset}/test.pt",
    params:
        name="{dataset}",
        dataset_cfg=lambda wc: config["datasets"][wc.dataset],
    log:
        "logs/make_dataset/{dataset}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["data"]
    script:
        JOB_SCRIPT
