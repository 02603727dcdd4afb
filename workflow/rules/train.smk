# Stage 5: training. A study with `pack: 1` (the default) gets one job per (arm, seed) from the
# rule `train`; a study with `pack: N` gets one job per pack of up to N runs of one architecture
# (neurobias.packed), generated below, writing the same per-model files; `pack: auto`, one job per
# group of runs that can share one; `pack_engine: stacked` always trains in packs (trains_in_packs).
# The epoch checkpoint is deliberately not a declared output, so Snakemake keeps it when a job dies
# and the rerun resumes.


def arm_target_path(study, arm):
    target = study_cfg(study)["arms"][arm].get("target")
    return None if target is None else f"results/similarity/{study}/{target}.npy"


def training_inputs(study):
    """What every training job of a study reads besides its targets."""
    track_test = study_cfg(study)["training"]["track_test"]
    return dict(train_split=split_path(study, "train"), val_split=split_path(study, "val"),
                recording=recording_path(study), diagnostic_target=f"results/similarity/{study}/model.npy",
                # Federer 2020's per-epoch test metrics (training.track_test)
                test_split=split_path(study, "test") if track_test else [])


# every configured study, not only studies_to_run: brain_likeness may read another study's models
PACKED_STUDIES = [s for s in config["studies"] if rule_params.trains_in_packs(study_cfg(s))]
UNPACKED_STUDIES = [s for s in config["studies"] if s not in PACKED_STUDIES]


rule train:
    input:
        unpack(lambda wc: training_inputs(wc.study)),
        target=lambda wc: arm_target_path(wc.study, wc.arm) or [],
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
    wildcard_constraints:
        # packed studies train in the pack rules below (a pattern that matches no name if all are)
        study="|".join(re.escape(s) for s in UNPACKED_STUDIES) or "(?!)",
    log:
        "logs/train/{study}/{arm}/seed{seed}.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["training"]
    script:
        JOB_SCRIPT


# One rule per pack (a rule's outputs are fixed lists here, not patterns): asking for one model
# builds its pack. The cluster runtime is the per-model runtime times the pack's runs (with the
# stacked engine an upper bound). The engine and fit mode are params: changing them retrains.
for _study in PACKED_STUDIES:
    for _k, _runs in enumerate(rule_params.training_packs(study_cfg(_study))):
        _dirs = [f"results/train/{_study}/{arm}/seed{seed}" for arm, seed in _runs]
        _targets = [arm_target_path(_study, arm) for arm, _ in _runs]

        rule:
            name:
                f"train_pack__{_study}__{_k}"
            input:
                **training_inputs(_study),
                targets=sorted({t for t in _targets if t}),
            output:
                model=[f"{d}/model.pt" for d in _dirs],
                history=[f"{d}/history.csv" for d in _dirs],
            params:
                runs=[{**rule_params.packed_run(study_cfg(_study), arm, seed), "target": target}
                      for (arm, seed), target in zip(_runs, _targets)],
                training_cfg=study_cfg(_study)["training"],
                device=DEVICE,
                **rule_params.pack_training(study_cfg(_study)),
            log:
                f"logs/train/{_study}/pack{_k}.log",
            threads: job_threads("gpu_jobs", 1)
            resources:
                **pack_resources(len(_runs)),
            conda:
                "../../envs/neurobias.yaml"
            priority: STAGE_PRIORITY["training"]
            script:
                JOB_SCRIPT
