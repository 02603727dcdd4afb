"""The training jobs: one (arm, seed) run (:func:`train`) or a pack of them in one process
(:func:`train_pack`), both through :func:`_train_runs` (:mod:`neurobias.packed`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import resolve_device
from ..provenance import write_provenance


# -- training -------------------------------------------------------------------------------------
def train(*, train_split, val_split, recording, diagnostic_target, model, history, arm_name: str, arm_cfg: dict,
          model_cfg: dict, training_cfg: dict, rsm_metric: str | None, seed: int, device: str, target=None,
          test_split=None, progress: bool = True) -> None:
    """Train one (arm, seed): ``model`` (model.pt) and ``history`` (history.csv), resuming from
    the checkpoint.pt beside them when a killed run of the same configuration left one.

    arm_cfg: the arm's settings; model_cfg: the study's model with the arm's changes;
    rsm_metric: the study's RSM metric (Federer arms; None otherwise); target: the arm's neural
    target (.npy), none for an unregularised arm; test_split: for ``training.track_test``."""
    run = {"arm_name": arm_name, "arm_cfg": arm_cfg, "model_cfg": model_cfg, "rsm_metric": rsm_metric,
           "seed": seed, "target": target or None}
    _train_runs([run], [model], [history], train_split=train_split, val_split=val_split, recording=recording,
                diagnostic_target=diagnostic_target, training_cfg=training_cfg, device=device,
                test_split=test_split, progress=progress, pack=None)


def train_pack(*, train_split, val_split, recording, diagnostic_target, model, history, runs: list[dict],
               training_cfg: dict, device: str, targets=(), test_split=None, progress: bool = True,
               engine: str = "sequential", fit: str = "error") -> None:
    """Train a pack of (arm, seed) runs of one study in one process (the study's ``pack`` setting):
    every run writes the model.pt, history.csv and provenance.json it would write alone; with the
    sequential engine it is trained exactly as alone (:mod:`neurobias.packed`), with the stacked
    one side by side with the others (:mod:`neurobias.stacked`).

    runs: per run the per-model rule's params (arm_name, arm_cfg, model_cfg, rsm_metric, seed) and
    ``target``, one of ``targets`` (the pack's neural targets, .npy) or None; model, history: the
    runs' outputs, in the order of ``runs``; engine, fit: the study's ``pack_engine`` and what a
    stack too large for the device's memory does (:func:`neurobias.rule_params.pack_training`)."""
    model, history, targets = _as_list(model), _as_list(history), _as_list(targets)
    if not (len(runs) == len(model) == len(history)):
        raise ValueError(f"train_pack: {len(runs)} runs for {len(model)} model.pt and {len(history)} history.csv outputs")
    stray = sorted({r["target"] for r in runs if r["target"]} - set(map(str, targets)))
    if stray:
        raise ValueError(f"train_pack: targets {stray} are not among the job's inputs {targets}")
    _train_runs(runs, model, history, train_split=train_split, val_split=val_split, recording=recording,
                diagnostic_target=diagnostic_target, training_cfg=training_cfg, device=device,
                test_split=test_split, progress=progress, pack={"runs": len(runs), "engine": engine}, engine=engine,
                fit=fit)


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _train_runs(runs: list[dict], models: list, histories: list, *, train_split, val_split, recording,
                diagnostic_target, training_cfg: dict, device: str, test_split, progress: bool,
                pack: dict | None, engine: str = "sequential", fit: str = "error") -> None:
    """The training job of one run (``pack`` None) or of a pack (``pack``: its provenance entry):
    the data is read once; ``engine`` and ``fit`` as :func:`neurobias.packed.train_runs` takes them."""
    from ..data import load_split, load_superclasses
    from ..neural.recording import Recording
    from ..packed import PackedRun, train_runs
    from ..registry import regularisers
    from ..train import TrainingConfig, resolve_precision
    started = time.time()
    device = resolve_device(device)
    for model_path, history_path in zip(models, histories):
        if Path(history_path).parent != Path(model_path).parent:
            raise ValueError(f"train: model {model_path} and history {history_path} must share a directory "
                             "(the checkpoint's)")
    rec = Recording.load(recording)
    shared = {"train": load_split(train_split), "val": load_split(val_split), "stimuli": rec.images,
              "stimulus_tiers": rec.tiers, "diagnostic_target": np.load(diagnostic_target),
              "test": load_split(test_split) if test_split else None,
              "superclass_of_class": load_superclasses(test_split) if test_split else None}
    loaded_targets = {path: np.load(path) for path in sorted({r["target"] for r in runs if r["target"]})}
    responses = None  # trial-averaged, once, if an MTL arm scores its head against them
    packed = []
    for run, model_path in zip(runs, models):
        context = {} if run["rsm_metric"] is None else {"rsm_metric": run["rsm_metric"]}
        kind = run["arm_cfg"]["regulariser"]
        if kind != "none" and regularisers()[kind].needs_responses:
            responses = rec.trial_average() if responses is None else responses
            context["responses"] = responses
        packed.append(PackedRun(arm=run["arm_cfg"], model_cfg=run["model_cfg"], seed=int(run["seed"]),
                                target=loaded_targets.get(run["target"]) if run["target"] else None,
                                context=context, out_dir=Path(model_path).parent))
    precision = resolve_precision(training_cfg["precision"], device)
    shared_seconds = time.time() - started

    def provenance(k: int, run_started: float) -> None:
        run = runs[k]
        extra = {"precision": precision}
        if pack is not None:  # the pack's data reading is in no run's wall_seconds
            extra["pack"] = {**pack, "index": k, "shared_seconds": round(shared_seconds, 3)}
        write_provenance(packed[k].out_dir, job="train", seed=int(run["seed"]), device=device,
                         started=run_started if pack is not None else started, extra=extra,
                         config_slice={"arm": run["arm_name"], "arm_config": run["arm_cfg"], "model": run["model_cfg"],
                                       "training": training_cfg, "rsm_metric": run["rsm_metric"],
                                       "data": [str(train_split), str(recording)]})

    train_runs(packed, training=TrainingConfig(**training_cfg), device=device, progress=progress,
               on_finished=provenance, engine=engine, fit=fit, **shared)
