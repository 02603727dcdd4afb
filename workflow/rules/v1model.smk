# Stage 3: the V1 predictive model (conv core + Gaussian readout) and its test metrics.


rule fit_v1_model:
    input:
        recording="results/neural/{recording}/recording.npz",
    output:
        model="results/v1model/{recording}/model.pt",
        metrics="results/v1model/{recording}/metrics.json",
    params:
        v1_model_cfg=lambda wc: config["recordings"][wc.recording]["v1_model"],
        device=DEVICE,
    log:
        "logs/fit_v1_model/{recording}.log",
    threads: max(2, job_threads("gpu_jobs", 2))  # nothing else overlaps with this stage
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["data"]
    script:
        JOB_SCRIPT
