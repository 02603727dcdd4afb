"""What each rule reads of the config: the slices the rules pass as ``params``.

A job gets exactly the values it uses, so Snakemake's params trigger reruns exactly the jobs a
config change affects (changing a figure note reruns the figures, not the statistics; changing
the RSM metric reruns the RSM teachers, not the Li targets). Deliberately light (no numpy,
pandas or torch): the Snakefile calls these while it builds the job graph.
"""

from __future__ import annotations

from .config import arm_model, sweep_arm_name

# What each kind of neural target reads of the study's ``similarity`` settings.
SIMILARITY_OPTIONS = {"model": (), "data": (), "responses_model": (),
                      "shuffle": ("shuffle_seed",), "responses_shuffle": ("shuffle_seed",),
                      "rsm_v1": ("rsm_metric", "shuffle_seed"), "rsm_v1_shuffle": ("rsm_metric", "shuffle_seed"),
                      "rsm_gaussian_v1": ("rsm_metric", "shuffle_seed"),
                      "rsm_gaussian_other": ("rsm_metric", "shuffle_seed", "gaussian_other"),
                      "vgg": ("shuffle_seed", "vgg_weights")}
# Targets computed with torch on the job's device (workflow rule similarity__from_network, a GPU job
# on a cluster), and the others, numpy computations of the responses (rule similarity, a CPU job).
DEVICE_TARGETS = frozenset({"model", "responses_model", "vgg"})
HOST_TARGETS = frozenset(SIMILARITY_OPTIONS) - DEVICE_TARGETS


def similarity_options(study_cfg: dict, kind: str, image_size: int) -> dict:
    """The ``similarity`` settings one kind of target is built from (and the image size for VGG)."""
    settings = study_cfg["similarity"]
    options = {key: settings[key] for key in SIMILARITY_OPTIONS[kind] if key in settings}
    if kind == "vgg":
        options["image_size"] = image_size
    return options


def training_rsm_metric(study_cfg: dict, arm_name: str) -> str | None:
    """The RSM metric an arm's regulariser uses (Federer arms), None for every other arm."""
    return study_cfg["similarity"]["rsm_metric"] if study_cfg["arms"][arm_name]["regulariser"] == "rsm" else None


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


# Neural targets computed from a network the study itself trains (Safarani's MTL-oracle targets
# come from a trained oracle): a run with one of these cannot share a job with the run it reads.
TARGETS_FROM_TRAINED_MODELS = frozenset({"responses_oracle"})


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
    a trained model (:data:`TARGETS_FROM_TRAINED_MODELS`) are packed apart, after the rest. Within a
    group the order is the config's arms, each over its seeds, so a pack holds consecutive runs."""
    groups: dict[tuple, list[tuple[str, int]]] = {}
    for arm, arm_cfg in study_cfg["arms"].items():
        key = (arm_cfg.get("target") in TARGETS_FROM_TRAINED_MODELS, repr(sorted(arm_model(study_cfg, arm).items())))
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

