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
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from .config import resolve_device
from .provenance import write_provenance


# -- running inside a Snakemake job --------------------------------------------------------------
@contextlib.contextmanager
def job_environment(log_path: str | None, threads: int = 1):
    """Send stdout/stderr (tqdm included) to the rule's log and pin torch's CPU threads to the
    rule's ``threads`` so parallel jobs don't oversubscribe the cores.

    Inside a Snakemake job script, a job that succeeded ends its process right after the block
    (outputs and log are closed by then): the interpreter's normal shutdown with torch loaded
    takes ~0.6 s on the 2-core reference machine (freeing torch's modules, measured against
    ``os._exit``), paid by every one of the 115 jobs of the default run. Errors propagate as
    usual, and outside a Snakemake script (tests, notebooks) nothing is cut short."""
    _limit_threads(max(1, int(threads)))
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            except BaseException:
                traceback.print_exc()  # into the job's log; re-raised, so Snakemake shows it too
                raise
    else:
        yield
    if _in_snakemake_script():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _limit_threads(threads: int) -> None:
    """torch's intra-op threads for this job. torch is imported only by the jobs that use it
    (statistics and most figures do not: ~1.3 s saved each); OpenMP reads the variable when
    torch loads, and a torch already loaded is set directly."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _in_snakemake_script() -> bool:
    """True in the process Snakemake starts for a rule's ``script:`` (its ``snakemake`` object is
    a global of ``__main__``)."""
    return getattr(sys.modules.get("__main__"), "snakemake", None) is not None


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
def download(entry: dict, config_key: str, dest, progress: bool = True) -> None:
    """Fetch a dataset's or recording's archive, verified against its pinned checksum.

    The only job that touches the network (a `localrule`: on a cluster it runs where snakemake
    runs). md5s of the public datasets are pinned in code; the Cadena zip's sha256 in the config.
    """
    from .data.download import DownloadError, fetch
    from .sources import DOWNLOAD_KEYS, SOURCES
    started = time.time()
    src = SOURCES[DOWNLOAD_KEYS[entry["source"]]]
    url = entry.get("url") or src["url"]
    sha256 = entry.get("sha256") or src.get("sha256")
    if not src.get("md5") and not sha256:
        raise DownloadError(
            f"{config_key}.sha256 is not set, and {url} is only parsed (unpickled) after its sha256 "
            f"matches a pinned value. Download it yourself (e.g. curl -LO {url}), compute "
            f"`sha256sum` of the zip, check it against the GIN record, then set {config_key}.sha256 "
            f"(and {config_key}.manual_path to skip a second download).")
    fetch(url, dest, md5=src.get("md5"), sha256=sha256, manual_path=entry.get("manual_path"),
          manual_key=f"{config_key}.manual_path", progress=progress)
    write_provenance(Path(dest).parent, job="download", filename=f"provenance_{Path(dest).name}.json",
                     config_slice={"url": url, "md5": src.get("md5"), "sha256": sha256}, started=started)


def make_dataset(name: str, params: dict, out_dir: str | Path, archive=None) -> None:
    from .data import DATASET_BUILDERS, save_split
    started = time.time()
    built = DATASET_BUILDERS[params["source"]]({**params, "archive": archive})
    splits, classes = built
    superclass_of_class = getattr(built, "superclass_of_class", None)
    for split, (images, labels) in splits.items():
        save_split(Path(out_dir) / f"{split}.pt", images, labels, classes,
                   superclass_of_class, getattr(built, "superclasses", None))
        print(f"{name}/{split}: {images.shape} uint8, {len(classes)} classes")
    write_provenance(out_dir, job="make_dataset", config_slice=params, seed=params.get("seed"), started=started)


def make_recording(name: str, params: dict, out_path: str | Path, archive=None) -> None:
    """A recording in the documented format: simulated, or converted from a verified download."""
    if params["source"] == "simulated":
        return simulate_recording(params, out_path)
    from .neural.cadena import cadena_recording
    started = time.time()
    rec = cadena_recording(archive, sha256=params.get("sha256"), train_fraction=params.get("train_fraction", 0.8),
                           config_key=f"recordings.{name}.sha256")
    rec.save(out_path)
    print(f"recording {name}: {rec.n_images} images, {rec.n_repeats} repeats, {rec.n_neurons} neurons")
    write_provenance(Path(out_path).parent, job="make_recording", config_slice=params, started=started)


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
                      model_similarity_path=None, vgg_weights_path=None, image_size: int = 32,
                      rsm_metric: str = "cosine", gaussian_other: dict | None = None,
                      device: str = "cpu") -> None:
    """Write S_neural of one kind over all the recording's stimulus images."""
    from .neural.recording import Recording
    from .neural.rsm import TEACHERS, teacher_rsm
    from .neural.similarity import neural_similarity, shuffle_responses, shuffle_similarity
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
    elif kind == "responses_model":  # Safarani 2021: the single-task V1 model's predictions [M, K]
        s = predict_responses(load_v1_model(v1_model_path, device), rec.images, device)
    elif kind == "responses_shuffle":  # the same responses, image identities permuted
        s = shuffle_responses(np.load(model_similarity_path), shuffle_seed)
    elif kind in TEACHERS:
        s = teacher_rsm(kind, rec.trial_average(), metric=rsm_metric, seed=shuffle_seed,
                        gaussian_other=gaussian_other)
    elif kind == "vgg":
        from .neural.vgg_similarity import vgg_similarity
        # no weights file: the config asked for a randomly initialised VGG-19 (tests, control)
        s = vgg_similarity(rec.images, image_size, vgg_weights_path, seed=shuffle_seed, device=device)
    else:
        raise ValueError(f"similarity kind {kind!r}: expected model, data, shuffle, vgg, responses_model, "
                         f"responses_shuffle or one of {TEACHERS}")
    _save_npy(s, out_path)
    write_provenance(Path(out_path).parent, job=f"similarity_{kind}", filename=f"provenance_{kind}.json",
                     config_slice={"kind": kind, "shuffle_seed": shuffle_seed, "rsm_metric": rsm_metric,
                                   "gaussian_other": gaussian_other,
                                   "vgg_weights": None if vgg_weights_path is None else str(vgg_weights_path)},
                     device=device, started=started)


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
def _first_test_images(test_path, n: int | None):
    """(images, labels) of the first ``n`` test images (all for None): the same for every model."""
    from .data import load_split
    images, labels, _ = load_split(test_path)
    return (images[:n], labels[:n]) if n else (images, labels)



def train(study: dict, arm_name: str, seed: int, data_dir, recording_path, target_path,
          diagnostic_target_path, out_dir, device: str, progress: bool = True, test_path=None) -> None:
    from .data import load_split, load_superclasses
    from .neural.recording import Recording
    from .config import arm_model
    from .train import TrainingConfig, resolve_precision, train_arm
    started = time.time()
    device = resolve_device(device)
    arm = study["arms"][arm_name]
    rec = Recording.load(recording_path)
    target = np.load(target_path) if target_path else None
    train_arm(train=load_split(Path(data_dir) / "train.pt"), val=load_split(Path(data_dir) / "val.pt"),
              stimuli=rec.images, stimulus_tiers=rec.tiers, target=target,
              diagnostic_target=np.load(diagnostic_target_path), arm=arm, model_cfg=arm_model(study, arm_name),
              training=TrainingConfig(**study["training"]), seed=seed, device=device, out_dir=out_dir,
              progress=progress, test=load_split(test_path) if test_path else None,
              superclass_of_class=load_superclasses(test_path) if test_path else None,
              context={"rsm_metric": study.get("similarity", {}).get("rsm_metric", "cosine"),
                       # MTL arms score their head against the recorded responses too
                       **({"responses": rec.trial_average()} if arm["regulariser"] == "mtl" else {})})
    write_provenance(out_dir, job="train", seed=seed, device=device, started=started,
                     extra={"precision": resolve_precision(study["training"].get("precision", "auto"), device)},
                     config_slice={"arm": arm_name, **{k: study[k] for k in ("dataset", "recording", "model", "training")},
                                   "arm_config": arm})


def evaluate_gaussian_noise(study_name: str, arm: str, seeds: list[int], params: dict, model_paths, test_path,
                            out_csv, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per noise level of every seed's model of one arm, on the same noisy images
    (drawn once per arm: a paired comparison across models and arms)."""
    from .robustness.noise import gaussian_noise_accuracies
    from .train import load_classifier
    started = time.time()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(model_paths):
        raise ValueError(f"evaluate_gaussian_noise: {len(model_paths)} models for {len(seeds)} seeds {seeds}")
    device = resolve_device(device)
    images, labels = _first_test_images(test_path, params.get("n_images"))
    records = gaussian_noise_accuracies([load_classifier(p, device) for p in model_paths], images, labels,
                                        params["levels"], params.get("seed", 0), device, progress=progress)
    frame = pd.DataFrame([{"study": study_name, "arm": arm, "seed": seed, "evaluation": "gaussian_noise",
                           "condition": "gaussian_noise", "level": r["level"], "metric": "accuracy",
                           "value": r["accuracy"]} for seed, seed_records in zip(seeds, records) for r in seed_records])
    _write_csv(frame, out_csv)
    write_provenance(Path(out_csv).parent, job="evaluate_gaussian_noise", filename=f"provenance_{arm}.json",
                     config_slice=params, seed=seeds, device=device, started=started)
    return frame


def evaluate_adversarial(study_name: str, arm: str, seed: int, params: dict, model_path, test_path,
                         out_csv, device: str, progress: bool = True) -> pd.DataFrame:
    """Li 2019 section 4.2: minimal adversarial perturbations (Foolbox FMN) on a seeded subset of
    the test images, the same subset for every model; per-image sizes beside the tidy medians."""
    from .data import load_split
    from .robustness.adversarial import minimal_perturbations, perturbation_records
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    images, labels, _ = load_split(test_path)
    per_image = minimal_perturbations(load_classifier(model_path, device), images, labels,
                                      norms=tuple(params.get("norms", ("l2", "linf"))),
                                      n_images=params["n_images"], seed=params.get("seed", 0),
                                      steps=params.get("steps", 100), device=device, progress=progress)
    _write_csv(per_image, Path(out_csv).with_name(f"seed{seed}_per_image.csv"))
    frame = pd.DataFrame(perturbation_records(per_image, study=study_name, arm=arm, seed=seed))
    _write_csv(frame, out_csv)
    write_provenance(Path(out_csv).parent, job="evaluate_adversarial", filename=f"provenance_seed{seed}.json",
                     config_slice=params, seed=seed, device=device, started=started)
    return frame


def oracle_targets(oracle_model_path, recording_path, responses_path, params: dict, out_path, device: str) -> dict:
    """Safarani 2021's MTL-oracle targets: a readout fitted on the oracle's frozen core (``layer``)
    to the single-task V1 model's predictions; its predictions on every stimulus image."""
    from .neural.recording import Recording
    from .regularisers.mtl import fit_oracle_targets
    from .train import load_classifier, stimuli_as_inputs
    started = time.time()
    device = resolve_device(device)
    model = load_classifier(oracle_model_path, device)
    rec = Recording.load(recording_path)
    # at the dataset's size and channels (the normalisation's), as training shows them; the model
    # resizes to its input_size itself
    stimuli = stimuli_as_inputs(rec.images, model.mean.shape[1], int(params["image_size"]))
    targets, metrics = fit_oracle_targets(model, stimuli, rec.tiers, np.load(responses_path), params["layer"],
                                          seed=params.get("seed", 0), epochs=params.get("epochs", 100),
                                          lr=params.get("lr", 0.01), device=device)
    _save_npy(targets, out_path)
    print(json.dumps(metrics))
    write_provenance(Path(out_path).parent, job="oracle_targets", filename="provenance_responses_oracle.json",
                     config_slice=params, seed=params.get("seed", 0), device=device, started=started,
                     extra={"metrics": metrics, "oracle_model": str(oracle_model_path)})
    return metrics


def evaluate_corruptions(study_name: str, arm: str, seeds: list[int], params: dict, model_paths, history_paths,
                         test_path, out_csv, out_npz, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per corruption x severity (and clean) of every seed's model of one arm on the first
    ``n_images`` test images, the same corrupted images for every model (generated once per arm);
    the MTL head's neural prediction performance from each training history (the epoch whose
    weights were kept); per-image correctness [seed, condition, image] for the bootstrap."""
    from .robustness.corruption_accuracy import corruption_accuracy
    from .robustness.corruptions import TIN_TC
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    images, labels = _first_test_images(test_path, params.get("n_images"))
    corruptions = params.get("corruptions") or list(TIN_TC)
    severities = params.get("severities") or [1, 2, 3, 4, 5]
    records, correct, conditions = corruption_accuracy(
        [load_classifier(p, device) for p in model_paths], images, labels, corruptions, severities,
        params.get("seed", 0), params.get("batch_size", 500), device, progress=progress)
    rows = []
    for seed, seed_records, history_path in zip(seeds, records, history_paths):
        rows += [{"study": study_name, "arm": arm, "seed": seed, "evaluation": "corruptions",
                  "condition": r["corruption"], "category": r["category"], "level": r["severity"],
                  "metric": "accuracy", "value": r["accuracy"]} for r in seed_records]
        history = pd.read_csv(history_path)
        kept = history[history["restored"].astype(bool)] if "restored" in history else history.tail(1)
        for metric, column in (("neural_prediction_r", "neural_r_target"),
                               ("neural_prediction_r_data", "neural_r_data")):
            value = float(kept[column].iloc[-1]) if column in kept else float("nan")
            rows.append({"study": study_name, "arm": arm, "seed": seed, "evaluation": "corruptions",
                         "condition": "neural", "category": "neural", "level": 0, "metric": metric,
                         "value": value})
    frame = pd.DataFrame(rows)
    _write_csv(frame, out_csv)
    out_npz = Path(out_npz)
    tmp = out_npz.with_name(out_npz.name + ".tmp.npz")
    np.savez_compressed(tmp, correct=correct, seeds=np.asarray(seeds), corruption=np.array([c for c, _ in conditions]),
                        severity=np.array([s for _, s in conditions]))
    os.replace(tmp, out_npz)
    write_provenance(Path(out_csv).parent, job="evaluate_corruptions", filename=f"provenance_{arm}.json",
                     config_slice=params, seed=list(seeds), device=device, started=started)
    return frame


# -- statistics and figures -----------------------------------------------------------------------
def statistics(csv_paths, baseline: str, out_summary, out_tests, controls=()) -> None:
    """Summary per arm and level; every arm vs the baseline, and vs each control arm (e.g. the
    regulariser arms vs Shuffle: does the real target beat a target with the same statistics?).
    The ``baseline`` column of the tests table says which comparison a row is."""
    from .stats import compare_to_baseline, summarise
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    _write_csv(summarise(tidy), out_summary)
    tests = [compare_to_baseline(tidy, baseline=b) for b in [baseline, *controls]]
    _write_csv(pd.concat(tests, ignore_index=True), out_tests)
    write_provenance(Path(out_tests).parent, job="stats", filename=f"provenance_{Path(out_tests).stem}.json",
                     config_slice={"baseline": baseline, "controls": list(controls),
                                   "inputs": [str(p) for p in csv_paths]}, started=started)


def tidy_arm(arm_name: str, arm: dict) -> str:
    """The arm a model is shown as: a label-noise sweep's copy is its base arm at another level."""
    from .config import sweep_arm_name
    base = arm.get("sweep_of")
    if base and "label_noise" in arm and arm_name == sweep_arm_name(base, "label_noise", arm["label_noise"]):
        return base
    return arm_name


def learning_curve_statistics(history_paths: dict, study_name: str, study: dict, out_tidy, out_summary,
                              out_tests) -> None:
    """Federer et al. 2020's statistics: per fraction of corrupted labels and epoch, each arm vs
    the r = 0 arm (the baseline) trained on the same labels, one-tailed Welch t-test across seeds.
    history_paths: {(arm, seed): history.csv}."""
    from .stats import GROUP_KEYS, compare_to_baseline, learning_curve_records, summarise
    started = time.time()
    metrics = study["evaluations"]["learning_curves"].get("metrics") or None
    frames = []
    for (arm_name, seed), path in sorted(history_paths.items()):
        arm = study["arms"][arm_name]
        kw = {"metrics": metrics} if metrics else {}
        frames.append(learning_curve_records(pd.read_csv(path), study=study_name, arm=tidy_arm(arm_name, arm),
                                             seed=seed, label_noise=arm.get("label_noise", 0.0),
                                             r=arm.get("r", 0.0) if arm["regulariser"] == "rsm" else 0.0, **kw))
    tidy = pd.concat(frames, ignore_index=True)
    _write_csv(tidy, out_tidy)
    by = (*GROUP_KEYS, "epoch")
    summary = summarise(tidy, by=(*by, "arm"))
    r_of = tidy.groupby("arm")["r"].first()
    summary["r"] = summary["arm"].map(r_of)
    _write_csv(summary, out_summary)
    tests = compare_to_baseline(tidy, baseline=study["baseline_arm"], by=by)
    tests["r"] = tests["arm"].map(r_of)
    _write_csv(tests, out_tests)
    write_provenance(Path(out_tests).parent, job="stats_learning_curves", filename="provenance_learning_curves.json",
                     config_slice={"baseline": study["baseline_arm"], "seeds": study["seeds"],
                                   "inputs": sorted(str(p) for p in history_paths.values())}, started=started)


def adversarial_figure(csv_paths, tests_path, study_name: str, study: dict, out_pdf, out_png) -> None:
    from .figures import FIGURES
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    tidy = tidy[tidy["metric"].isin(["median_l2", "median_linf"])]
    note = study.get("figure_note", "") + f" n = {len(study['seeds'])} seeds per arm; median minimal " \
        "perturbation (Foolbox FMN) per model; bars mean ± SEM; * p < 0.05 (one-tailed Welch t-test vs baseline)."
    tests = pd.read_csv(tests_path)
    FIGURES["adversarial"](tidy, tests[tests["baseline"] == study["baseline_arm"]],
                           title=f"{study_name}: minimal adversarial perturbation",
                           note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job="figure_adversarial", filename="provenance_adversarial.json",
                     config_slice={"study": study_name, "seeds": study["seeds"]}, started=started)


def noise_figure(summary_path, tests_path, study_name: str, study: dict, out_pdf, out_png,
                 test_split_path=None) -> None:
    from .data import load_split
    from .figures import FIGURES
    chance = 1.0 / len(load_split(test_split_path)[2]) if test_split_path else None
    summary = pd.read_csv(summary_path)
    tests = pd.read_csv(tests_path)
    tests = tests[tests["baseline"] == study["baseline_arm"]]  # stars: each arm vs the baseline
    n_seeds = len(study["seeds"])
    note = study.get("figure_note", "") + f" n = {n_seeds} seeds per arm; mean ± SEM; * p < 0.05, ** p < 0.001 " \
        "(one-tailed Welch t-test vs baseline)."
    started = time.time()
    FIGURES["noise_robustness"](summary, tests, title=f"{study_name}: accuracy under Gaussian noise",
                                note=note.strip(), out_pdf=out_pdf, out_png=out_png, chance=chance)
    write_provenance(Path(out_pdf).parent, job="figure_noise_robustness", filename="provenance_noise_robustness.json",
                     config_slice={"study": study_name, "seeds": study["seeds"]}, started=started)


def federer_roles(study: dict) -> dict:
    """Which arm plays which part in Federer et al.'s figures, from the study's arms and sweeps."""
    arms, base = study["arms"], study["baseline_arm"]
    sweeps = study.get("sweeps", {})
    rsm_arms = [a for a, c in arms.items() if c["regulariser"] == "rsm" and "sweep_of" not in c]
    noisy = [a for a in sweeps.get("label_noise", {}).get("arms", []) if a != base]
    teacher = (noisy or [a for a in rsm_arms if arms[a]["target"] == "rsm_v1"] or rsm_arms or [base])[0]
    r_sweep = sweeps.get("r", {})
    r_base = (r_sweep.get("arms") or [teacher])[0]
    from .config import sweep_arm_name
    return {"baseline": base, "teacher": teacher,
            "max_level": max(sweeps.get("label_noise", {}).get("fractions", [0.0])),
            "teachers": [base, *rsm_arms],
            "r_arms": [r_base] + [sweep_arm_name(r_base, "r", v) for v in r_sweep.get("values", [])]}


def federer_figure(figure: str, summary_path, tests_path, study_name: str, study: dict, out_pdf, out_png) -> None:
    """Fig. 6 or Fig. 7 of Federer et al. 2020 (``figure``: federer_fig6 | federer_fig7)."""
    from .figures import FIGURES
    started = time.time()
    note = study.get("figure_note", "") + f" n = {len(study['seeds'])} seeds per arm; mean ± SEM; " \
        "* p < 0.05, ** p < 0.001 (one-tailed Welch t-test vs r = 0 on the same labels)."
    roles = federer_roles(study)
    label = {"federer_fig6": "Fig. 6: neural data and corrupted labels",
             "federer_fig7": "Fig. 7: teacher variants and r"}[figure]
    FIGURES[figure](pd.read_csv(summary_path), pd.read_csv(tests_path), roles=roles,
                    title=f"{study_name} ({study['model']['architecture']}): {label}",
                    note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job=f"figure_{figure}", filename=f"provenance_{figure}.json",
                     config_slice={"study": study_name, "seeds": study["seeds"], "roles": roles}, started=started)


# -- brain-likeness vs robustness (Dapello et al. 2020, Geirhos et al. 2018) -------------------------
def _seeded_subset(images, labels, n: int | None, seed: int):
    """The same seeded subset of test images for every model (a paired comparison)."""
    if not n or n >= len(images):
        return images, labels
    rows = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 41])).choice(len(images), n, replace=False))
    return images[rows], labels[rows]


def brain_likeness(study_name: str, study: dict, arm: str, model_paths: dict, test_path, recording_paths: dict,
                   params: dict, out_csv, device: str, progress: bool = True) -> pd.DataFrame:
    """Every seed of one arm: clean accuracy, V1 explained variance of each candidate layer against
    each recording (PLS, cross-validated, ceiling-normalised), white-box PGD accuracy, and accuracy
    and response entropy under Geirhos et al.'s manipulations. One tidy CSV (all seeds).

    model_paths: {seed: model.pt}; recording_paths: {recording name: recording.npz}."""
    from .data import load_split
    from .layer_names import DEFAULT_EV_LAYERS
    from .neural.recording import Recording
    from .predictivity import layer_explained_variance
    from .robustness.manipulations import manipulation_accuracy
    from .robustness.pgd import is_stochastic, pgd_accuracy, white_box_records
    from .train import evaluate, load_classifier
    started = time.time()
    device = resolve_device(device)
    images, labels, _ = load_split(test_path)
    architecture = study["model"]["architecture"]
    layers = (params.get("layers") or {}).get(architecture) or list(DEFAULT_EV_LAYERS[architecture])
    recordings = {name: Recording.load(p) for name, p in recording_paths.items()}
    # explained variance always; white-box attacks and manipulations when the config has their key
    ev_cfg, wb_cfg, man_cfg = params.get("explained_variance", {}), params.get("white_box"), params.get("manipulations")
    base = {"study": study_name, "arm": arm}
    rows: list[dict] = []
    for seed, path in sorted(model_paths.items()):
        model = load_classifier(path, device)
        meta = {**base, "seed": int(seed)}
        model_layers = [layer for layer in layers if layer in model.tap_names]  # "vone" only where it exists
        if not model_layers:
            raise ValueError(f"brain_likeness.layers.{architecture}: none of {layers} is a layer of "
                             f"{arm}'s model (its taps: {list(model.tap_names)})")
        stochastic = is_stochastic(model)
        clean_loss, clean_acc = evaluate(model, images, labels, 512, device)
        rows.append({**meta, "evaluation": "clean", "condition": "test", "level": np.nan, "metric": "accuracy",
                     "value": clean_acc})
        for rec_name, rec in recordings.items():
            frame = layer_explained_variance(model, rec, model_layers, device=device, seed=ev_cfg.get("seed", 0),
                                             n_components=ev_cfg.get("n_components", 25),
                                             n_folds=ev_cfg.get("n_folds", 10), max_images=ev_cfg.get("max_images"),
                                             max_features=ev_cfg.get("max_features", 1000),
                                             pool_to=ev_cfg.get("pool_to", 8),
                                             image_size=images.shape[-1], channels=images.shape[1])
            for r in frame.itertuples():
                for metric in ("median_ev", "median_r", "n_neurons_used"):
                    rows.append({**meta, "evaluation": "v1_explained_variance", "condition": rec_name,
                                 "level": r.layer, "metric": metric, "value": float(getattr(r, metric))})
        if wb_cfg:
            records = []
            for norm, budgets in wb_cfg["budgets"].items():
                records += pgd_accuracy(model, images, labels, norm=norm, epsilons=budgets,
                                        steps=wb_cfg.get("steps", 20), rel_stepsize=wb_cfg.get("rel_stepsize"),
                                        n_images=wb_cfg.get("n_images", 1000),
                                        seed=wb_cfg.get("seed", 0), device=device,
                                        eot_samples=wb_cfg.get("eot_samples", 8) if stochastic else 1)
            rows += white_box_records(records, study=study_name, arm=arm, seed=seed)
        if man_cfg is not None:
            sub_x, sub_y = _seeded_subset(images, labels, man_cfg.get("n_images", 1000), man_cfg.get("seed", 0))
            for r in manipulation_accuracy(model, sub_x, sub_y, man_cfg.get("levels"), seed=man_cfg.get("seed", 0),
                                           device=device, progress=False):
                for metric in ("accuracy", "entropy_bits"):
                    rows.append({**meta, "evaluation": "manipulations", "condition": r["manipulation"],
                                 "level": r["level"], "metric": metric, "value": float(r[metric])})
        print(f"{arm} seed {seed}: clean {clean_acc:.3f}, stochastic={stochastic}", flush=True)
    frame = pd.DataFrame(rows)
    _write_csv(frame, out_csv)
    write_provenance(Path(out_csv).parent, job="brain_likeness", filename=f"provenance_{arm}.json",
                     config_slice={"params": params, "layers": layers, "recordings": sorted(recording_paths)},
                     device=device, started=started)
    return frame


def model_table(frames: list[pd.DataFrame], studies: dict, noise_frames: list[pd.DataFrame] = ()) -> pd.DataFrame:
    """One row per trained model: its brain-likeness (best layer's V1 explained variance per
    recording) and its robustness (white-box accuracy, normalised by clean accuracy as Dapello,
    mean Gaussian-noise accuracy over sigma > 0 where evaluated, mean accuracy and entropy over
    the manipulations)."""
    tidy = pd.concat(frames, ignore_index=True)
    keys = ["study", "arm", "seed"]
    out = tidy[keys].drop_duplicates().reset_index(drop=True)
    out["architecture"] = out["study"].map(lambda s: studies[s]["model"]["architecture"])

    def pick(evaluation, metric, condition=None):
        f = tidy[(tidy["evaluation"] == evaluation) & (tidy["metric"] == metric)]
        if condition is not None:
            f = f[f["condition"] == condition]
        return f

    index = out.set_index(keys).index  # one row per model; every column below is mapped onto it
    out["clean_accuracy"] = index.map(pick("clean", "accuracy").set_index(keys)["value"])
    ev = pick("v1_explained_variance", "median_ev")
    for rec, f in ev.groupby("condition"):
        f = f.assign(value=pd.to_numeric(f["value"]))
        f = f[np.isfinite(f["value"])]  # a layer with no usable neuron has no explained variance
        best = f.loc[f.groupby(keys)["value"].idxmax()].set_index(keys)
        out[f"v1_ev_{rec}"] = index.map(best["value"])
        out[f"best_layer_{rec}"] = index.map(best["level"])
    wb = pick("white_box", "white_box_accuracy").set_index(keys)["value"]
    if len(wb):
        out["white_box_accuracy"] = index.map(wb)
        out["white_box_normalised"] = out["white_box_accuracy"] / out["clean_accuracy"]
    man = tidy[tidy["evaluation"] == "manipulations"]
    if len(man):
        for metric, col in (("accuracy", "manipulation_accuracy"), ("entropy_bits", "manipulation_entropy_bits")):
            out[col] = index.map(man[man["metric"] == metric].groupby(keys)["value"].mean())
    if len(noise_frames):
        noise = pd.concat(noise_frames, ignore_index=True)
        noise = noise[(noise["metric"] == "accuracy") & (noise["level"] > 0)]
        out["gaussian_noise_accuracy"] = index.map(noise.groupby(keys)["value"].mean())
    return out


ROBUSTNESS_COLUMNS = ("white_box_accuracy", "white_box_normalised", "gaussian_noise_accuracy",
                      "manipulation_accuracy")


def brain_likeness_analysis(brain_csvs, noise_csvs, studies: dict, out_models, out_correlations) -> None:
    """The table of all models and the correlations of V1 explained variance with each robustness
    measure (Pearson r, p, n), across all models and within each study."""
    from .stats import correlate
    started = time.time()
    table = model_table([pd.read_csv(p) for p in brain_csvs], studies, [pd.read_csv(p) for p in noise_csvs])
    _write_csv(table, out_models)
    ys = [c for c in ROBUSTNESS_COLUMNS if c in table.columns]
    corr = []
    for x in sorted(c for c in table.columns if c.startswith("v1_ev_")):
        pooled = correlate(table, x, ys).assign(study="all")
        corr += [pooled, correlate(table, x, ys, by=("study",))]
    _write_csv(pd.concat(corr, ignore_index=True)[["study", "x", "y", "r", "p", "n"]], out_correlations)
    write_provenance(Path(out_models).parent, job="brain_likeness_analysis", filename="provenance_analysis.json",
                     config_slice={"inputs": [str(p) for p in [*brain_csvs, *noise_csvs]]}, started=started)


def dapello_figure(models_path, correlations_path, config: dict, out_pdf, out_png) -> None:
    """Dapello Fig. 1 over every analysed model, against the first recording's V1 explained variance."""
    from .figures import FIGURES
    started = time.time()
    table, corr = pd.read_csv(models_path), pd.read_csv(correlations_path)
    # the first analysed study's own recording (every study's own one is scored)
    own = config["studies"][table["study"].iloc[0]]["recording"]
    x = f"v1_ev_{own}"
    notes = sorted({config["studies"][s].get("figure_note", "") for s in table["study"].unique()} - {""})
    note = " ".join(notes) + f" One point per trained model (n = {len(table)}); line: least squares; " \
        "r, p: Pearson across models."
    FIGURES["dapello_fig1"](table, corr, x=x, title="Brain-likeness vs robustness (after Dapello et al. 2020, Fig. 1)",
                            note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job="figure_dapello", filename="provenance_dapello_fig1.json",
                     config_slice={"x": x, "models": len(table)}, started=started)


def geirhos_figure(csv_paths, test_path, study_name: str, study: dict, out_pdf, out_png) -> None:
    from .data import load_split
    from .figures import FIGURES
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    n_classes = len(load_split(test_path)[2])  # entropy's maximum is log2 of it
    note = study.get("figure_note", "") + f" n = {len(study['seeds'])} seeds per arm; mean ± SEM; " \
        "entropy of the distribution of responses over classes (Geirhos et al. 2018)."
    FIGURES["geirhos_fig3"](tidy, n_classes=n_classes,
                            title=f"{study_name}: image manipulations (after Geirhos et al. 2018, Fig. 3)",
                            note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job="figure_geirhos", filename="provenance_geirhos_fig3.json",
                     config_slice={"study": study_name, "seeds": study["seeds"]}, started=started)


# -- Safarani 2021: corruption robustness ---------------------------------------------------------
def safarani_arms_table(study: dict) -> pd.DataFrame:
    """arm, base_arm (the arm a batch-ratio sweep copied, else itself), batch_ratio (NaN without MTL)."""
    return pd.DataFrame([{"arm": name, "base_arm": arm.get("sweep_of") or name,
                          "batch_ratio": float(arm.get("batch_ratio", 1.0)) if arm["regulariser"] == "mtl"
                          else float("nan")}
                         for name, arm in study["arms"].items()])


def _load_correct(npz_paths: dict) -> tuple[dict, list[tuple[str, int]]]:
    """{(arm, seed): correct [conditions, images]} and the conditions, from one file per arm."""
    correct, conditions = {}, None
    for arm, path in npz_paths.items():
        with np.load(path) as z:
            for seed, c in zip(z["seeds"].tolist(), z["correct"]):
                correct[(arm, int(seed))] = c
            conds = list(zip(z["corruption"].tolist(), z["severity"].tolist()))
        if conditions is not None and conds != conditions:
            raise ValueError(f"{path}: evaluated under other conditions than the other models")
        conditions = conds
    return correct, conditions


def corruption_statistics(csv_paths, npz_paths: dict, study_name: str, study: dict, out_accuracy, out_scores,
                          out_per_seed, out_models, out_regression) -> None:
    """Safarani 2021's statistics: accuracy per arm x corruption x severity (mean, SEM over seeds);
    robustness scores relative to the baseline, overall and per category, with bootstrapped
    intervals (test images resampled in pairs across models, and each arm's seeds); per-seed
    scores; one row per model; the 2-factor OLS of robustness on neural prediction performance and
    clean accuracy over each batch-ratio pool. npz_paths: {arm: per-image correctness of its seeds}."""
    from .robustness.corruptions import CATEGORIES
    from .stats import (bootstrap_robustness, model_robustness_table, robustness_scores_per_seed, summarise,
                        two_factor_regression)
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    baseline = study["baseline_arm"]
    spec = study["evaluations"]["corruptions"]
    boot = spec.get("bootstrap", {})
    accuracy = tidy[tidy["metric"] == "accuracy"]
    _write_csv(summarise(accuracy, by=("study", "evaluation", "condition", "category", "level", "metric", "arm")),
               out_accuracy)
    correct, conditions = _load_correct(npz_paths)
    scores = bootstrap_robustness(correct, conditions, baseline, CATEGORIES, repetitions=boot.get("repetitions", 250),
                                  seed=boot.get("seed", 0), study=study_name)
    _write_csv(scores, out_scores)
    _write_csv(robustness_scores_per_seed(tidy, baseline, CATEGORIES), out_per_seed)
    models = model_robustness_table(tidy, safarani_arms_table(study), baseline, CATEGORIES)
    _write_csv(models, out_models)
    pools = spec.get("regression_pools") or sorted({a.get("sweep_of") for a in study["arms"].values()
                                                    if a.get("sweep_of") and a["regulariser"] == "mtl"})
    regression = two_factor_regression(models[models["pool"].isin(pools)], by=("pool",))
    _write_csv(regression, out_regression)
    print(regression.to_string())
    write_provenance(Path(out_scores).parent, job="stats_corruptions", filename="provenance_corruptions.json",
                     config_slice={"baseline": baseline, "corruptions": spec, "pools": pools}, started=started)


def _figure_arms(study: dict) -> list[str]:
    """Hand-written arms (no sweep copies), in Safarani's order where the names are his."""
    from .figures.safarani import SAFARANI_ARMS
    arms = [a for a, cfg in study["arms"].items() if not cfg.get("sweep_of")]
    return sorted(arms, key=lambda a: (SAFARANI_ARMS.index(a) if a in SAFARANI_ARMS else len(SAFARANI_ARMS),
                                       arms.index(a)))


def safarani_fig3(panel: str, scores_path, per_seed_path, models_path, regression_path, study_name: str,
                  study: dict, out_pdf, out_png) -> None:
    """Fig. 3A (per category), 3B (overall) or 3C (robustness vs neural prediction)."""
    from .figures import FIGURES
    started = time.time()
    spec = study["evaluations"]["corruptions"]
    n_seeds = len(study["seeds"])
    note = study.get("figure_note", "")
    if panel in ("a", "b"):
        scores = pd.read_csv(scores_path)
        level = int(round(100 * float(scores["level"].iloc[0]))) if "level" in scores and len(scores) else 95
        note += (f" Robustness score: mean over corruptions of accuracy (mean over severities and {n_seeds} seeds) "
                 f"relative to {study['baseline_arm']}; bars: {level} % bootstrap intervals "
                 f"({spec.get('bootstrap', {}).get('repetitions', 250)} resamples of test images and seeds); "
                 "dots: single seeds.")
        FIGURES[f"safarani_fig3{panel}"](scores, scores, per_seed=pd.read_csv(per_seed_path),
                                         arms=_figure_arms(study),
                                         title=f"{study_name}: robustness {'per category' if panel == 'a' else 'overall'}",
                                         note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    else:
        regression = pd.read_csv(regression_path)
        pools = list(dict.fromkeys(regression["pool"])) if len(regression) else []
        note += (" One point per model (batch-ratio sweep x seeds); line: OLS robustness ~ neural prediction + "
                 "clean accuracy, drawn at the pool's mean clean accuracy.")
        FIGURES["safarani_fig3c"](pd.read_csv(models_path), regression, pools=pools,
                                  title=f"{study_name}: robustness vs neural prediction",
                                  note=note.strip(), out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job=f"figure_safarani_fig3{panel}",
                     filename=f"provenance_safarani_fig3{panel}.json",
                     config_slice={"study": study_name, "seeds": study["seeds"]}, started=started)


def safarani_fig2(accuracy_path, model_paths: dict, test_path, study_name: str, study: dict, out_pdf, out_png,
                  device: str = "cpu") -> None:
    """Fig. 2: corruptions ranked by the MTL arm's accuracy relative to the baseline (mean over
    severities and seeds); for the best, median and worst one, a test image that both networks
    classify correctly when clean, clean and at ``example_severity`` (the very image the evaluation
    used), with both networks' predictions (first seed). model_paths: {arm: model.pt}."""
    import torch

    from .config import example_arms
    from .data import load_split
    from .figures import FIGURES
    from .figures.safarani import select_example_corruptions
    from .robustness.corruption_accuracy import corrupted_batch
    from .robustness.corruptions import TIN_TC
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    spec = study["evaluations"]["corruptions"]
    base, mtl = example_arms(study)
    acc = pd.read_csv(accuracy_path)
    acc = acc[(acc["metric"] == "accuracy") & (acc["condition"] != "clean")]
    per = acc.groupby(["arm", "condition"])["mean"].mean().unstack("arm")
    ratios = (per[mtl] / per[base]).replace([np.inf, -np.inf], np.nan).dropna()
    chosen = select_example_corruptions(ratios)
    images, labels, classes = load_split(test_path)
    n = spec.get("n_images") or len(images)
    images, labels = images[:n], labels[:n]
    models = {arm: load_classifier(model_paths[arm], device) for arm in dict.fromkeys((base, mtl))}
    batch = spec.get("batch_size", 500)
    with torch.no_grad():
        clean_pred = {a: torch.cat([m(images[i:i + batch].to(device).float() / 255).argmax(1).cpu()
                                    for i in range(0, n, batch)]) for a, m in models.items()}
    both_right = torch.ones(n, dtype=torch.bool)
    for p in clean_pred.values():
        both_right &= p == labels
    index = int(torch.nonzero(both_right)[0]) if both_right.any() else 0
    severity = spec.get("example_severity", 3)
    corruptions = spec.get("corruptions") or list(TIN_TC)
    start = index - index % batch  # regenerate the evaluation's batch, so the image is the one scored
    rows = []
    for row, corruption in chosen.items():
        x = corrupted_batch(images[start:min(start + batch, n)].to(device), corruptions, corruption, severity,
                            spec.get("seed", 0), start)[index - start:index - start + 1]
        record = {"row": row, "corruption": corruption, "severity": severity, "ratio": float(ratios[corruption]),
                  "label": classes[int(labels[index])], "clean_image": images[index].numpy(),
                  "corrupted_image": x[0].cpu().numpy()}
        with torch.no_grad():
            for arm, m in models.items():
                record[f"{arm}_clean"] = classes[int(clean_pred[arm][index])]
                record[f"{arm}_corrupted"] = classes[int(m(x.float() / 255).argmax(1))]
        rows.append(record)
    note = (study.get("figure_note", "") + f" Test image {index}; corruptions where {mtl} gains most, a median "
            f"amount and least relative to {base} (accuracy ratio, mean over severities and seeds); severity "
            f"{severity}; predictions of seed {study['seeds'][0]}.").strip()
    FIGURES["safarani_fig2"](rows, arms=tuple(dict.fromkeys((base, mtl))), title=f"{study_name}: example corruptions",
                             note=note, out_pdf=out_pdf, out_png=out_png)
    write_provenance(Path(out_pdf).parent, job="figure_safarani_fig2", filename="provenance_safarani_fig2.json",
                     config_slice={"study": study_name, "arms": [base, mtl], "image": index,
                                   "corruptions": chosen}, device=device, started=started)
