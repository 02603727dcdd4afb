"""One function per workflow rule: paths and config slices in, files out.

The rules in ``workflow/rules/*.smk`` call these through tiny scripts, so everything a rule does
is reachable from tests without Snakemake. Each job writes its outputs atomically (temporary name,
then rename) and a ``provenance.json`` beside them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import resolve_device
from .provenance import write_provenance


# -- running inside a Snakemake job --------------------------------------------------------------
@contextlib.contextmanager
def job_environment(log_path: str | None, threads: int = 1):
    """Send stdout/stderr (tqdm included) to the rule's log and pin torch's CPU threads to the
    rule's ``threads`` so parallel jobs don't oversubscribe the cores."""
    torch.set_num_threads(max(1, int(threads)))
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _write_json(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def _save_npy(array: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


# -- data ----------------------------------------------------------------------------------------
def make_dataset(name: str, params: dict, out_dir: str | Path) -> None:
    from .data import DATASET_BUILDERS, save_split
    started = time.time()
    splits, classes = DATASET_BUILDERS[params["source"]](params)
    for split, (images, labels) in splits.items():
        save_split(Path(out_dir) / f"{split}.pt", images, labels, classes)
        print(f"{name}/{split}: {images.shape} uint8, {len(classes)} classes")
    write_provenance(out_dir, job="make_dataset", config_slice=params, seed=params.get("seed"), started=started)


def simulate_recording(params: dict, out_path: str | Path) -> None:
    from .data.synthetic import make_stimulus_images
    from .neural.simulated_v1 import SimulatedV1, V1PopulationParams
    started = time.time()
    size = params.get("image_size", 32)
    images = make_stimulus_images(params.get("stimulus_dataset_seed", params["seed"]), params["n_images"], size)
    population = SimulatedV1(V1PopulationParams(image_size=size, **params.get("population", {})), params["seed"])
    rec = population.record(images, params["repeats"], params["seed"], params.get("test_fraction", 0.2),
                            params.get("missing_fraction", 0.0))
    rec.save(out_path)
    print(f"recording: {rec.n_images} images, {rec.n_repeats} repeats, {rec.n_neurons} neurons")
    write_provenance(Path(out_path).parent, job="simulate_recording", config_slice=params,
                     seed=params["seed"], started=started)


# -- V1 predictive model --------------------------------------------------------------------------
def fit_v1_model(recording_path, params: dict, out_model, out_metrics, device: str, progress=True) -> dict:
    from .neural.recording import Recording
    from .neural.v1_model import fit_v1_model as fit, save_v1_model
    started = time.time()
    device = resolve_device(device)
    rec = Recording.load(recording_path)
    model, metrics = fit(rec, device=device, progress=progress, **params)
    save_v1_model(model, out_model)
    _write_json(metrics, out_metrics)
    summary = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    print(json.dumps(summary))
    write_provenance(Path(out_model).parent, job="fit_v1_model", config_slice=params,
                     seed=params.get("seed"), device=device, started=started, extra={"metrics": summary})
    return metrics


# -- similarity targets ---------------------------------------------------------------------------
def similarity_target(kind: str, recording_path, v1_model_path, out_path, *, shuffle_seed: int = 0,
                      model_similarity_path=None, device: str = "cpu") -> None:
    """Write S_neural of one kind over all the recording's stimulus images."""
    from .neural.recording import Recording
    from .neural.similarity import neural_similarity, shuffle_similarity
    from .neural.v1_model import load_v1_model, predict_responses
    started = time.time()
    device = resolve_device(device)
    rec = Recording.load(recording_path)
    if kind == "model":
        s = neural_similarity(predict_responses(load_v1_model(v1_model_path, device), rec.images, device))
    elif kind == "data":
        s = neural_similarity(rec.trial_average())
    elif kind == "shuffle":
        s = shuffle_similarity(np.load(model_similarity_path), shuffle_seed)
    else:
        raise ValueError(f"similarity kind {kind!r}: expected model, data or shuffle")
    _save_npy(s, out_path)
    write_provenance(Path(out_path).parent, job=f"similarity_{kind}", filename=f"provenance_{kind}.json",
                     config_slice={"kind": kind, "shuffle_seed": shuffle_seed}, device=device, started=started)


def similarity_diagnostics(target_paths: dict[str, str], recording_path, out_path) -> dict:
    from .neural.recording import Recording
    from .neural.similarity import target_diagnostics
    started = time.time()
    rec = Recording.load(recording_path)
    targets = {k: np.load(p) for k, p in target_paths.items()}
    diag = target_diagnostics(targets, np.flatnonzero(rec.tiers == "test"), rec.responses)
    _write_json(diag, out_path)
    write_provenance(Path(out_path).parent, job="similarity_diagnostics", filename="provenance_diagnostics.json",
                     config_slice={"targets": sorted(target_paths)}, started=started)
    print(json.dumps(diag, indent=1))
    return diag


# -- training and evaluation ----------------------------------------------------------------------
def train(study: dict, arm_name: str, seed: int, data_dir, recording_path, target_path,
          diagnostic_target_path, out_dir, device: str, progress: bool = True) -> None:
    from .data import load_split
    from .neural.recording import Recording
    from .train import TrainingConfig, train_arm
    started = time.time()
    device = resolve_device(device)
    arm = study["arms"][arm_name]
    rec = Recording.load(recording_path)
    target = np.load(target_path) if target_path else None
    train_arm(train=load_split(Path(data_dir) / "train.pt"), val=load_split(Path(data_dir) / "val.pt"),
              stimuli=rec.images, stimulus_tiers=rec.tiers, target=target,
              diagnostic_target=np.load(diagnostic_target_path), arm=arm, model_cfg=study["model"],
              training=TrainingConfig(**study["training"]), seed=seed, device=device, out_dir=out_dir,
              progress=progress)
    write_provenance(out_dir, job="train", seed=seed, device=device, started=started,
                     config_slice={"arm": arm_name, **{k: study[k] for k in ("dataset", "recording", "model", "training")},
                                   "arm_config": arm})


def evaluate_gaussian_noise(study_name: str, arm: str, seed: int, params: dict, model_path, test_path,
                            out_csv, device: str, progress: bool = True) -> pd.DataFrame:
    from .data import load_split
    from .robustness.noise import gaussian_noise_accuracy
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    images, labels, _ = load_split(test_path)
    n = params.get("n_images")
    if n:
        images, labels = images[:n], labels[:n]
    records = gaussian_noise_accuracy(load_classifier(model_path, device), images, labels, params["levels"],
                                      params.get("seed", 0), device, progress=progress)
    frame = pd.DataFrame([{"study": study_name, "arm": arm, "seed": seed, "evaluation": "gaussian_noise",
                           "condition": "gaussian_noise", "level": r["level"], "metric": "accuracy",
                           "value": r["accuracy"]} for r in records])
    _write_csv(frame, out_csv)
    write_provenance(Path(out_csv).parent, job="evaluate_gaussian_noise", filename=f"provenance_seed{seed}.json",
                     config_slice=params, seed=seed, device=device, started=started)
    return frame


# -- statistics and figures -----------------------------------------------------------------------
def statistics(csv_paths, baseline: str, out_summary, out_tests) -> None:
    from .stats import compare_to_baseline, summarise
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    _write_csv(summarise(tidy), out_summary)
    _write_csv(compare_to_baseline(tidy, baseline=baseline), out_tests)
    write_provenance(Path(out_tests).parent, job="stats", filename=f"provenance_{Path(out_tests).stem}.json",
                     config_slice={"baseline": baseline, "inputs": [str(p) for p in csv_paths]}, started=started)


def noise_figure(summary_path, tests_path, study_name: str, study: dict, out_pdf, out_png,
                 test_split_path=None) -> None:
    from .data import load_split
    from .figures import FIGURES
    chance = 1.0 / len(load_split(test_split_path)[2]) if test_split_path else None
    summary = pd.read_csv(summary_path)
    tests = pd.read_csv(tests_path)
    n_seeds = len(study["seeds"])
    note = study.get("figure_note", "") + f" n = {n_seeds} seeds per arm; mean ± SEM; * p < 0.05, ** p < 0.001 " \
        "(one-tailed Welch t-test vs baseline)."
    started = time.time()
    FIGURES["noise_robustness"](summary, tests, title=f"{study_name}: accuracy under Gaussian noise",
                                note=note.strip(), out_pdf=out_pdf, out_png=out_png, chance=chance)
    write_provenance(Path(out_pdf).parent, job="figure_noise_robustness", filename="provenance_noise_robustness.json",
                     config_slice={"study": study_name, "seeds": study["seeds"]}, started=started)
