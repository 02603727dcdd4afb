# Stage 4: neural targets: Li's S_neural (model, data, shuffle, vgg), Federer's teacher RSMs
# (rsm_v1, rsm_v1_shuffle, rsm_gaussian_v1, rsm_gaussian_other), Safarani's response targets
# (responses_model, responses_shuffle, responses_oracle), and diagnostics of what they can teach.


def recording_of(wc):
    return f"results/neural/{study_cfg(wc.study)['recording']}/recording.npz"


rule similarity:
    input:
        recording=recording_of,
        v1model=lambda wc: (
            f"results/v1model/{study_cfg(wc.study)['recording']}/model.pt"
            if wc.kind in ("model", "responses_model")
            else []
        ),
        # what a shuffle permutes
        model_similarity=lambda wc: {
            "shuffle": f"results/similarity/{wc.study}/model.npy",
            "responses_shuffle": f"results/similarity/{wc.study}/responses_model.npy",
        }.get(wc.kind, []),
        vgg_weights=lambda wc: (
            f"results/downloads/{VGG19_FILE}"
            if wc.kind == "vgg" and vgg_weights_kind(wc.study) == "imagenet"
            else []
        ),
    output:
        "results/similarity/{study}/{kind}.npy",
    wildcard_constraints:
        kind="model|data|shuffle|vgg|rsm_v1|rsm_v1_shuffle|rsm_gaussian_v1|rsm_gaussian_other|responses_model|responses_shuffle",
    params:
        shuffle_seed=lambda wc: study_cfg(wc.study).get("similarity", {}).get("shuffle_seed", 0),
        image_size=lambda wc: image_size_of(config["datasets"][study_cfg(wc.study)["dataset"]]),
        rsm_metric=lambda wc: study_cfg(wc.study).get("similarity", {}).get("rsm_metric", "cosine"),
        gaussian_other=lambda wc: study_cfg(wc.study).get("similarity", {}).get("gaussian_other"),
    log:
        "logs/similarity/{study}/{kind}.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/similarity.py"


rule similarity_diagnostics:
    input:
        recording=recording_of,
        targets=lambda wc: expand(
            "results/similarity/{study}/{kind}.npy",
            study=wc.study,
            kind=sorted(
                {k for k in similarity_targets(study_cfg(wc.study)) if not k.startswith("responses_")}
                | {"data", "shuffle"}
            ),
        ),
    output:
        "results/similarity/{study}/diagnostics.json",
    log:
        "logs/similarity/{study}/diagnostics.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/similarity_diagnostics.py"


# Safarani 2021's MTL-oracle targets: a readout fitted on one trained oracle network's frozen core.
rule oracle_targets:
    input:
        oracle=lambda wc: "results/train/{study}/{arm}/seed{seed}/model.pt".format(
            study=wc.study, arm=oracle_readout(study_cfg(wc.study))["arm"],
            seed=oracle_readout(study_cfg(wc.study))["model_seed"],
        ),
        recording=recording_of,
        responses="results/similarity/{study}/responses_model.npy",
    output:
        "results/similarity/{study}/responses_oracle.npy",
    params:
        cfg=lambda wc: {
            **oracle_readout(study_cfg(wc.study)),
            "image_size": image_size_of(config["datasets"][study_cfg(wc.study)["dataset"]]),
        },
    log:
        "logs/similarity/{study}/responses_oracle.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    script:
        "../scripts/oracle_targets.py"
