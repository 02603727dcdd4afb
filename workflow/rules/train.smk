# Stage 5: one training job per (study, arm, seed). The epoch checkpoint is deliberately not a
# declared output, so Snakemake keeps it when a job dies and the rerun resumes from it.


def arm_target(wc):
    arm = study_cfg(wc.study)["arms"][wc.arm]
    return f"results/similarity/{wc.study}/{arm['target']}.npy" if "target" in arm else []


rule train:
    input:
        train_split=dataset_split("train"),
        val_split=dataset_split("val"),
        recording=recording_of,
        target=arm_target,
        diagnostic_target="results/similarity/{study}/model.npy",
        # Federer 2020's per-epoch test metrics (training.track_test)
        test_split=lambda wc: dataset_split("test")(wc) if study_cfg(wc.study)["training"]["track_test"] else [],
    output:
        model="results/train/{study}/{arm}/seed{seed}/model.pt",
        history="results/train/{study}/{arm}/seed{seed}/history.csv",
    params:
        arm_name="{arm}",
        arm_cfg=lambda wc: study_cfg(wc.study)["arms"][wc.arm],
        model_cfg=lambda wc: arm_model(study_cfg(wc.study), wc.arm),
        training_cfg=lambda wc: study_cfg(wc.study)["training"],
        rsm_metric=lambda wc: rule_params.training_rsm_metric(study_cfg(wc.study), wc.arm),
        seed=lambda wc: int(wc.seed),
        device=DEVICE,
    log:
        "logs/train/{study}/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        JOB_SCRIPT
