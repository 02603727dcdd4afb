"""The evaluation jobs: each scores trained models and writes a tidy table (columns ``study, arm,
seed, evaluation, condition, level, metric, value``): robustness to Gaussian noise, minimal
adversarial perturbations and corruptions, and the brain-likeness scoring of every model (V1
explained variance, white-box PGD, Geirhos manipulations).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import resolve_device
from ..provenance import write_provenance
from .atomic import write_csv


# -- robustness -----------------------------------------------------------------------------------
def _first_test_images(test_path, n: int | None):
    """(images, labels) of the first ``n`` test images (all for None): the same for every model."""
    from ..data import load_split
    images, labels, _ = load_split(test_path)
    return (images[:n], labels[:n]) if n else (images, labels)


def evaluate_gaussian_noise(*, models: list, test_split, table, study: str, arm: str, seeds: list[int],
                            noise_cfg: dict, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per noise level of every seed's model of one arm, on the same noisy images
    (drawn once per arm: a paired comparison across models and arms)."""
    from ..models import to_inference_layout
    from ..models.io import load_classifier
    from ..robustness.noise import gaussian_noise_accuracies
    started = time.time()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(models):
        raise ValueError(f"evaluate_gaussian_noise: {len(models)} models for {len(seeds)} seeds {seeds}")
    device = resolve_device(device)
    images, labels = _first_test_images(test_split, noise_cfg.get("n_images"))
    classifiers = to_inference_layout([load_classifier(p, device) for p in models])
    records = gaussian_noise_accuracies(classifiers, images, labels, noise_cfg["levels"], noise_cfg["seed"], device,
                                        progress=progress)
    frame = pd.DataFrame([{"study": study, "arm": arm, "seed": seed, "evaluation": "gaussian_noise",
                           "condition": "gaussian_noise", "level": r["level"], "metric": "accuracy",
                           "value": r["accuracy"]} for seed, seed_records in zip(seeds, records) for r in seed_records])
    write_csv(frame, table)
    write_provenance(Path(table).parent, job="evaluate_gaussian_noise", filename=f"provenance_{arm}.json",
                     config_slice=noise_cfg, seed=seeds, device=device, started=started)
    return frame


def evaluate(*, models: list, test_split, table, study: str, arm: str, evaluation: str, seeds: list[int],
             evaluation_cfg: dict, device: str, progress: bool = True) -> pd.DataFrame:
    """A generic evaluation (a plugin's, declared ``generic``): every seed's model of one arm scored
    by the evaluation's builder ``(models, images, labels, cfg, device, progress)`` on the test
    images, which returns per model a list of ``{condition, level, metric, value}`` records. The
    models come in evaluation layout; the tidy table has the columns every evaluation writes."""
    from ..data import load_split
    from ..models import to_inference_layout
    from ..models.io import load_classifier
    from ..registry import evaluations
    started = time.time()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(models):
        raise ValueError(f"evaluate {evaluation}: {len(models)} models for {len(seeds)} seeds {seeds}")
    device = resolve_device(device)
    images, labels, _ = load_split(test_split)
    classifiers = to_inference_layout([load_classifier(p, device) for p in models])
    records = evaluations()[evaluation].load()(classifiers, images, labels, evaluation_cfg, device, progress)
    if len(records) != len(models):
        raise ValueError(f"evaluation {evaluation!r}: its builder returned {len(records)} lists of records for "
                         f"{len(models)} models")
    rows = []
    for seed, model_records in zip(seeds, records):
        for r in model_records:
            missing = {"condition", "level", "metric", "value"} - set(r)
            if missing:
                raise ValueError(f"evaluation {evaluation!r}: a record lacks {sorted(missing)}: {r}")
            rows.append({"study": study, "arm": arm, "seed": seed, "evaluation": evaluation,
                         "condition": r["condition"], "level": r["level"], "metric": r["metric"],
                         "value": float(r["value"])})
    frame = pd.DataFrame(rows)
    write_csv(frame, table)
    write_provenance(Path(table).parent, job=f"evaluate_{evaluation}", filename=f"provenance_{arm}.json",
                     config_slice=evaluation_cfg, seed=seeds, device=device, started=started)
    return frame


def evaluate_adversarial(*, model, test_split, table, per_image, study: str, arm: str, seed: int, attack_cfg: dict,
                         device: str, progress: bool = True) -> pd.DataFrame:
    """Li 2019 section 4.2: minimal adversarial perturbations (Foolbox FMN) on a seeded subset of
    the test images, the same subset for every model; per-image sizes beside the tidy medians."""
    from ..data import load_split
    from ..models.io import load_classifier
    from ..robustness.adversarial import minimal_perturbations, perturbation_records
    started = time.time()
    device = resolve_device(device)
    seed = int(seed)
    images, labels, _ = load_split(test_split)
    sizes = minimal_perturbations(load_classifier(model, device), images, labels,
                                  norms=tuple(attack_cfg["norms"]), n_images=attack_cfg["n_images"],
                                  seed=attack_cfg["seed"], steps=attack_cfg["steps"], device=device,
                                  progress=progress)
    write_csv(sizes, per_image)
    frame = pd.DataFrame(perturbation_records(sizes, study=study, arm=arm, seed=seed))
    write_csv(frame, table)
    write_provenance(Path(table).parent, job="evaluate_adversarial", filename=f"provenance_seed{seed}.json",
                     config_slice=attack_cfg, seed=seed, device=device, started=started)
    return frame


def evaluate_corruptions(*, models: list, histories: list, test_split, table, correct, study: str, arm: str,
                         seeds: list[int], corruptions_cfg: dict, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per corruption x severity (and clean) of every seed's model of one arm on the first
    ``n_images`` test images, the same corrupted images for every model (generated once per arm);
    the MTL head's neural prediction performance from each training history (the epoch whose
    weights were kept); per-image correctness [seed, condition, image] for the bootstrap."""
    from ..models import to_inference_layout
    from ..models.io import load_classifier
    from ..robustness.corruption_accuracy import corruption_accuracy
    started = time.time()
    device = resolve_device(device)
    spec = corruptions_cfg
    images, labels = _first_test_images(test_split, spec.get("n_images"))
    classifiers = to_inference_layout([load_classifier(p, device) for p in models])
    records, per_image, conditions = corruption_accuracy(
        classifiers, images, labels, spec["corruptions"], spec["severities"], spec["seed"], spec["batch_size"], device,
        progress=progress)
    rows = []
    for seed, seed_records, history_path in zip(seeds, records, histories):
        rows += [{"study": study, "arm": arm, "seed": seed, "evaluation": "corruptions",
                  "condition": r["corruption"], "category": r["category"], "level": r["severity"],
                  "metric": "accuracy", "value": r["accuracy"]} for r in seed_records]
        run_history = pd.read_csv(history_path)
        kept = run_history[run_history["restored"].astype(bool)] if "restored" in run_history else run_history.tail(1)
        for metric, column in (("neural_prediction_r", "neural_r_target"),
                               ("neural_prediction_r_data", "neural_r_data")):
            value = float(kept[column].iloc[-1]) if column in kept else float("nan")
            rows.append({"study": study, "arm": arm, "seed": seed, "evaluation": "corruptions",
                         "condition": "neural", "category": "neural", "level": 0, "metric": metric,
                         "value": value})
    frame = pd.DataFrame(rows)
    write_csv(frame, table)
    out_npz = Path(correct)
    tmp = out_npz.with_name(out_npz.name + ".tmp.npz")
    np.savez_compressed(tmp, correct=per_image, seeds=np.asarray(seeds),
                        corruption=np.array([c for c, _ in conditions]), severity=np.array([s for _, s in conditions]))
    os.replace(tmp, out_npz)
    write_provenance(Path(table).parent, job="evaluate_corruptions", filename=f"provenance_{arm}.json",
                     config_slice=spec, seed=list(seeds), device=device, started=started)
    return frame


# -- brain-likeness vs robustness (Dapello et al. 2020, Geirhos et al. 2018) -------------------------
def _seeded_subset(images, labels, n: int | None, seed: int):
    """The same seeded subset of test images for every model (a paired comparison)."""
    if not n or n >= len(images):
        return images, labels
    rows = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 41])).choice(len(images), n, replace=False))
    return images[rows], labels[rows]


def _manipulation_rows(meta: dict, records: list[dict]) -> list[dict]:
    """Tidy rows of one model's manipulation records: accuracy and response entropy per level."""
    return [{**meta, "evaluation": "manipulations", "condition": r["manipulation"], "level": r["level"],
             "metric": metric, "value": float(r[metric])} for r in records for metric in ("accuracy", "entropy_bits")]


def brain_likeness(*, models: list, test_split, recordings: list, table, study: str, arm: str, seeds: list[int],
                   recording_names: list[str], layers: list[str], brain_likeness_cfg: dict, device: str,
                   progress: bool = True) -> pd.DataFrame:
    """Every seed of one arm: clean accuracy, V1 explained variance of each candidate layer against
    each recording (PLS, cross-validated, ceiling-normalised), white-box PGD accuracy, and accuracy
    and response entropy under Geirhos et al.'s manipulations. One tidy CSV (all seeds).

    models: one model.pt per seed (in ``seeds`` order); recordings: one recording.npz per name in
    ``recording_names``; layers: the candidate layers of the study's architecture."""
    from ..data import load_split
    from ..neural.recording import Recording
    from ..predictivity import layer_explained_variance
    from ..models import CPU_EVAL_BATCH_SIZE, to_inference_layout
    from ..models.io import load_classifier
    from ..robustness.manipulations import manipulation_accuracies
    from ..robustness.pgd import is_stochastic, pgd_accuracy, white_box_records
    from ..train import evaluate
    started = time.time()
    device = resolve_device(device)
    images, labels, _ = load_split(test_split)
    scored = {name: Recording.load(p) for name, p in zip(recording_names, recordings)}
    # explained variance always; white-box attacks and manipulations when the config has their key
    ev_cfg = brain_likeness_cfg["explained_variance"]
    wb_cfg, man_cfg = brain_likeness_cfg.get("white_box"), brain_likeness_cfg.get("manipulations")
    if man_cfg is not None:
        sub_x, sub_y = _seeded_subset(images, labels, man_cfg["n_images"], man_cfg["seed"])

    def manipulated(classifiers: list) -> list[list[dict]]:
        return manipulation_accuracies(classifiers, sub_x, sub_y, man_cfg.get("levels"), seed=man_cfg["seed"],
                                       device=device, progress=False,
                                       phase_noise_method=man_cfg["phase_noise_method"])

    tables: list[list[dict]] = []  # each model's rows, in seed order
    # Deterministic models are scored on the manipulations together after the loop: the manipulated
    # images are then made once per job, not once per model.
    unscored: list[tuple] = []  # (meta, rows, model)
    for seed, path in sorted(zip((int(s) for s in seeds), models)):
        # channels_last, as in the other evaluation jobs: the job ran 17-25 % faster on the 2-core CPU;
        # a VOneBlock's noise is then drawn in that layout's memory order (other numbers, same law)
        model = to_inference_layout([load_classifier(path, device)])[0]
        meta = {"study": study, "arm": arm, "seed": seed}
        rows: list[dict] = []
        tables.append(rows)
        model_layers = [layer for layer in layers if layer in model.tap_names]  # "vone" only where it exists
        if not model_layers:
            raise ValueError(f"brain_likeness.layers: none of {layers} is a layer of "
                             f"{arm}'s model (its taps: {list(model.tap_names)})")
        stochastic = is_stochastic(model)
        # a stochastic model draws its noise per batch: its batch size (512) is part of its result
        small = not stochastic and device == "cpu"  # (resolve_device's string)
        clean_loss, clean_acc = evaluate(model, images, labels, CPU_EVAL_BATCH_SIZE if small else 512, device)
        rows.append({**meta, "evaluation": "clean", "condition": "test", "level": np.nan, "metric": "accuracy",
                     "value": clean_acc})
        for rec_name, rec in scored.items():
            frame = layer_explained_variance(model, rec, model_layers, device=device, seed=ev_cfg["seed"],
                                             n_components=ev_cfg["n_components"], n_folds=ev_cfg["n_folds"],
                                             max_images=ev_cfg.get("max_images"),
                                             max_features=ev_cfg["max_features"], pool_to=ev_cfg["pool_to"],
                                             image_size=images.shape[-1], channels=images.shape[1])
            for r in frame.itertuples():
                for metric in ("median_ev", "median_r", "n_neurons_used"):
                    rows.append({**meta, "evaluation": "v1_explained_variance", "condition": rec_name,
                                 "level": r.layer, "metric": metric, "value": float(getattr(r, metric))})
        if wb_cfg:
            records = []
            for norm, budgets in wb_cfg["budgets"].items():
                records += pgd_accuracy(model, images, labels, norm=norm, epsilons=budgets,
                                        steps=wb_cfg["steps"], rel_stepsize=wb_cfg.get("rel_stepsize"),
                                        n_images=wb_cfg["n_images"], seed=wb_cfg["seed"], device=device,
                                        eot_samples=wb_cfg["eot_samples"] if stochastic else 1)
            rows += white_box_records(records, study=study, arm=arm, seed=seed)
        if man_cfg is not None:
            if stochastic:  # now and alone: its noise draws continue torch's global stream in seed order
                rows += _manipulation_rows(meta, manipulated([model])[0])
            else:
                unscored.append((meta, rows, model))
        print(f"{arm} seed {seed}: clean {clean_acc:.3f}, stochastic={stochastic}", flush=True)
    if unscored:
        for (meta, rows, _), records in zip(unscored, manipulated([m for _, _, m in unscored])):
            rows += _manipulation_rows(meta, records)
    frame = pd.DataFrame([row for rows in tables for row in rows])
    write_csv(frame, table)
    write_provenance(Path(table).parent, job="brain_likeness", filename=f"provenance_{arm}.json",
                     config_slice={"params": brain_likeness_cfg, "layers": layers, "recordings": recording_names},
                     device=device, started=started)
    return frame

