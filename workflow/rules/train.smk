# Stage 5: one training job per (study, arm, seed). The epoch checkpoint is deliberately not a
# declared output, so Snakemake keeps it when a job dies and the rerun resumes from it.


rule train:
    input:
        data=lambda wc: multiext(f"results/data/{study_cfg(wc.study)['dataset']}/", "train.pt", "val.pt"),
        recording=recording_of,
        target=lambda wc: target_path(wc.study, wc.arm),
        diagnostic_target="results/similarity/{study}/model.npy",
        # Federer 2020's per-epoch test metrics (training.track_test)
        test_split=lambda wc: (
            f"results/data/{study_cfg(wc.study)['dataset']}/test.pt"
            if study_cfg(wc.study)["training"].get("track_test")
            else []
        ),
    output:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        history="results/train/{study}/{arm}/seed{seed}/history.csv",
    log:
        "logs/train/{study}/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/train.py"
