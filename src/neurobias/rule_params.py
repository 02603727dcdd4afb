"""What each rule reads of the config: the slices the rules pass as ``params``.

A job gets exactly the values it uses, so Snakemake's params trigger reruns exactly the jobs a
config change affects (changing a figure note reruns the figures, not the statistics; changing
the RSM metric reruns the RSM teachers, not the Li targets). Deliberately light (no numpy,
pandas or torch): the Snakefile calls these while it builds the job graph.
"""

from __future__ import annotations

from .config import arm_model, sweep_arm_name
from .registry import regularisers, targets
from .sources import VGG19_FILE


def target_kinds(on_device: bool) -> list[str]:
    """The targets the ``similarity`` job builds (not those read from a trained model, which have
    rules of their own) that run a network on the job's device (rule similarity__from_network, a GPU
    job on a cluster), or the others, numpy computations of the responses (rule similarity, a CPU
    job)."""
    return [t.name for t in targets() if t.on_device == on_device and not t.from_trained_model]


def similarity_options(study_cfg: dict, kind: str, image_size: int) -> dict:
    """The ``similarity`` settings one kind of target is built from (its declared ``options``), and
    the image size for a target that reads a network's features of the stimuli (VGG)."""
    settings = study_cfg["similarity"]
    spec = targets()[kind]
    options = {key: settings[key] for key in spec.options if key in settings}
    if "vgg_weights" in spec.reads:
        options["image_size"] = image_size
    return options


def target_inputs(study: str, study_cfg: dict, kind: str) -> dict:
    """The files a target is built from besides the recording, by what it declares it ``reads``:
    ``v1_model`` (the fitted V1 model), ``vgg_weights`` (the ImageNet VGG-19, only when the study's
    ``similarity.vgg_weights`` is imagenet), ``target:<name>`` (another target of the study)."""
    inputs = {}
    for read in targets()[kind].reads:
        if read == "v1_model":
            inputs["v1_model"] = f"results/v1model/{study_cfg['recording']}/model.pt"
        elif read == "vgg_weights":
            if study_cfg["similarity"]["vgg_weights"] == "imagenet":
                inputs["vgg_weights"] = f"results/downloads/{VGG19_FILE}"
        elif read.startswith("target:"):
            inputs["source_target"] = f"results/similarity/{study}/{read.removeprefix('target:')}.npy"
        else:
            raise ValueError(f"target {kind!r}: unknown input {read!r} (expected v1_model, vgg_weights or target:<name>)")
    return inputs


def training_rsm_metric(study_cfg: dict, arm_name: str) -> str | None:
    """The RSM metric an arm's regulariser uses (a kind that declares it reads ``rsm_metric``:
    Federer's), None for every other arm."""
    kind = study_cfg["arms"][arm_name]["regulariser"]
    if kind == "none" or "rsm_metric" not in regularisers()[kind].study_settings:
        return None
    return study_cfg["similarity"]["rsm_metric"]


def _arm_fields(study_cfg: dict, keys: tuple[str, ...]) -> dict:
    """{arm: the given settings of it that the arm has}."""
    return {name: {k: arm[k] for k in keys if k in arm} for name, arm in study_cfg["arms"].items()}


def learning_curve_arms(study_cfg: dict) -> dict:
    """What Federer's statistics read of each arm: its regulariser, weight r, corrupted-label
    fraction and the arm a sweep copied."""
    return _arm_fields(study_cfg, ("regulariser", "r", "label_noise", "sweep_of"))


def corruption_arms(study_cfg: dict) -> dict:
    """What Safarani's statistics read of each arm: its regulariser, batch ratio and sweep base."""
    return _arm_fields(study_cfg, ("regulariser", "batch_ratio", "sweep_of"))


def regression_pools(study_cfg: dict) -> list[str]:
    """The batch-ratio pools the 2-factor OLS runs over: ``evaluations.corruptions.regression_pools``,
    else every mtl arm a sweep copied."""
    return (study_cfg["evaluations"]["corruptions"].get("regression_pools")
            or sorted({a["sweep_of"] for a in study_cfg["arms"].values()
                       if a.get("sweep_of") and a["regulariser"] == "mtl"}))


def hand_written_arms(study_cfg: dict) -> list[str]:
    """The arms of the config file, without the copies sweeps made."""
    return [name for name, arm in study_cfg["arms"].items() if not arm.get("sweep_of")]


def federer_roles(study_cfg: dict) -> dict:
    """Which arm plays which part in Federer et al.'s figures, from the study's arms and sweeps."""
    arms, base = study_cfg["arms"], study_cfg["baseline_arm"]
    sweeps = study_cfg.get("sweeps", {})
    rsm_arms = [a for a, c in arms.items() if c["regulariser"] == "rsm" and "sweep_of" not in c]
    noisy = [a for a in sweeps.get("label_noise", {}).get("arms", []) if a != base]
    teacher = (noisy or [a for a in rsm_arms if arms[a]["target"] == "rsm_v1"] or rsm_arms or [base])[0]
    r_sweep = sweeps.get("r", {})
    r_base = (r_sweep.get("arms") or [teacher])[0]
    return {"baseline": base, "teacher": teacher,
            "max_level": max(sweeps.get("label_noise", {}).get("fractions", [0.0])),
            "teachers": [base, *rsm_arms],
            "r_arms": [r_base] + [sweep_arm_name(r_base, "r", v) for v in r_sweep.get("values", [])]}


def brain_likeness_settings(config: dict) -> dict:
    """The measurement settings of ``brain_likeness`` (which studies and recordings take part
    decides which jobs exist, not what one job computes)."""
    return {k: v for k, v in config["brain_likeness"].items() if k not in ("studies", "recordings", "layers")}


# What makes the corrupted test images (the evaluation and Fig. 2 regenerate the same ones).
CORRUPTED_IMAGES = ("corruptions", "severities", "n_images", "seed", "batch_size")


def corruption_evaluation(study_cfg: dict) -> dict:
    """``evaluations.corruptions`` without the statistics' and figure's settings."""
    spec = study_cfg["evaluations"]["corruptions"]
    return {k: spec[k] for k in CORRUPTED_IMAGES if k in spec}


def corruption_example(study_cfg: dict) -> dict:
    """What Safarani's Fig. 2 reads: the corrupted images and the example's severity."""
    spec = study_cfg["evaluations"]["corruptions"]
    return {**corruption_evaluation(study_cfg), "example_severity": spec["example_severity"]}


def trains_in_packs(study_cfg: dict) -> bool:
    """Whether the study's training jobs are packs (rules ``train_pack__<study>__<k>``) rather than
    one job per (arm, seed): ``pack`` auto or above 1, or the stacked engine, which only the pack
    job runs (with ``pack: 1`` a stack of one)."""
    return study_cfg["pack"] == "auto" or study_cfg["pack"] > 1 or study_cfg["pack_engine"] == "stacked"


def pack_training(study_cfg: dict) -> dict:
    """How a pack job trains its runs (params of the pack rules, so changing the engine retrains):
    ``engine`` (``pack_engine``) and ``fit``, what a stack too large for the device's free memory
    does: "split" into stacks that fit with ``pack: auto``, else "error" (stop before training,
    naming how many runs fit). The sequential engine ignores ``fit`` (it holds one run at a time),
    so for it ``fit`` stays "error" and changing ``pack`` to auto reruns only the packs it regroups."""
    engine = study_cfg["pack_engine"]
    return {"engine": engine, "fit": "split" if engine == "stacked" and study_cfg["pack"] == "auto" else "error"}


def training_packs(study_cfg: dict) -> list[list[tuple[str, int]]]:
    """The study's (arm, seed) runs grouped into training jobs of at most ``pack`` runs each, or
    with ``pack: auto`` one job per group.

    Runs share a job only when they train the same network (the study's model with the arm's
    changes) and none of them needs another run's trained network: runs whose target is read from
    a trained model (declared ``from_trained_model``: Safarani's MTL-oracle targets) are packed
    apart, after the rest. Within a
    group the order is the config's arms, each over its seeds, so a pack holds consecutive runs."""
    groups: dict[tuple, list[tuple[str, int]]] = {}
    for arm, arm_cfg in study_cfg["arms"].items():
        from_model = "target" in arm_cfg and targets()[arm_cfg["target"]].from_trained_model
        key = (from_model, repr(sorted(arm_model(study_cfg, arm).items())))
        groups.setdefault(key, []).extend((arm, int(seed)) for seed in study_cfg["seeds"])
    packs = []
    for key in sorted(groups, key=lambda k: k[0]):  # model-dependent targets last; stable otherwise
        runs = groups[key]
        size = len(runs) if study_cfg["pack"] == "auto" else study_cfg["pack"]
        packs += [runs[i:i + size] for i in range(0, len(runs), size)]
    return packs


def packed_run(study_cfg: dict, arm: str, seed: int) -> dict:
    """What the training job reads of one (arm, seed) run of a pack (the per-model rule's params)."""
    return {"arm_name": arm, "arm_cfg": study_cfg["arms"][arm], "model_cfg": arm_model(study_cfg, arm),
            "rsm_metric": training_rsm_metric(study_cfg, arm), "seed": int(seed)}

