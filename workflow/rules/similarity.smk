# Stage 4: neural targets, each declared with its builder (neurobias.neural, or a plugin): Li's
# S_neural (model, data, shuffle, vgg), Federer's teacher RSMs (rsm_v1, rsm_v1_shuffle,
# rsm_gaussian_v1, rsm_gaussian_other), Safarani's response targets (responses_model,
# responses_shuffle, responses_oracle), and diagnostics of what they can teach.


def dataset_image_size(study):
    return image_size_of(config["datasets"][study_cfg(study)["dataset"]])


def diagnosed_kinds(study):
    """The similarity matrices the diagnostics compare: the study's (those declared diagnosed, i.e.
    matrices over images), plus data and shuffle."""
    kinds = {k for k in similarity_targets(study_cfg(study)) if targets()[k].diagnosed}
    return sorted(kinds | {"data", "shuffle"})


# Two rules, one per kind of job. Targets read from a network (the V1 model's predictions, a VGG's
# features: declared on_device) run on the device with a GPU job's cluster resources; the others
# are numpy computations of the responses, the same on every machine, with a CPU job's. Both run
# the `similarity` job (the part of a rule's name before "__"), which calls the kind's declared
# builder; what a kind reads (the V1 model, VGG weights, another target) is its input.
for _name, _on_device, _resources, _device in (
    ("similarity", False, "cpu_jobs", "cpu"),
    ("similarity__from_network", True, "gpu_jobs", DEVICE),
):

    rule:
        name:
            _name
        input:
            unpack(lambda wc: rule_params.target_inputs(wc.study, study_cfg(wc.study), wc.kind)),
            recording=recording_of,
        output:
            target="results/similarity/{study}/{kind}.npy",
        wildcard_constraints:
            kind="|".join(sorted(rule_params.target_kinds(_on_device))) or "(?!)",
        params:
            kind="{kind}",
            options=lambda wc: rule_params.similarity_options(study_cfg(wc.study), wc.kind, dataset_image_size(wc.study)),
            device=_device,
        log:
            "logs/similarity/{study}/{kind}.log",
        threads: job_threads(_resources, 1)
        resources:
            **job_resources(_resources),
        conda:
            "../../envs/neurobias.yaml"
        priority: STAGE_PRIORITY["targets"]
        script:
            JOB_SCRIPT


rule similarity_diagnostics:
    input:
        recording=recording_of,
        targets=lambda wc: [f"results/similarity/{wc.study}/{kind}.npy" for kind in diagnosed_kinds(wc.study)],
    output:
        diagnostics="results/similarity/{study}/diagnostics.json",
    params:
        kinds=lambda wc: diagnosed_kinds(wc.study),
    log:
        "logs/similarity/{study}/diagnostics.log",
    threads: job_threads("cpu_jobs", 1)
    resources:
        **job_resources("cpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["targets"]
    script:
        JOB_SCRIPT


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
        targets="results/similarity/{study}/responses_oracle.npy",
    params:
        readout_cfg=lambda wc: oracle_readout(study_cfg(wc.study)),
        image_size=lambda wc: dataset_image_size(wc.study),
        device=DEVICE,
    log:
        "logs/similarity/{study}/responses_oracle.log",
    threads: job_threads("gpu_jobs", 1)
    resources:
        **job_resources("gpu_jobs"),
    conda:
        "../../envs/neurobias.yaml"
    priority: STAGE_PRIORITY["targets"]
    script:
        JOB_SCRIPT
