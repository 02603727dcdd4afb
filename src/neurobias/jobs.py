"""The workflow's one glue layer: one function per rule, named after the rule.

Every rule in ``workflow/rules/*.smk`` runs ``workflow/scripts/run.py``, which calls :func:`run`:
it looks the rule up in :data:`JOBS` and calls its function with keyword arguments named after
the rule's ``input``, ``output`` and ``params`` entries (paths as strings, lists of paths as
lists, config slices as dicts). Everything a job uses from the config reaches it through the
rule's ``params``, so Snakemake's params trigger reruns exactly the jobs a config change affects.
The one exception is ``progress`` (tqdm bars in the logs), which changes no result and is passed
to the functions that take it.

So everything a rule does is reachable from tests without Snakemake: call the function with the
same keywords. Each job writes its outputs atomically (temporary name, then rename) and a
``provenance.json`` beside them.
"""

from __future__ import annotations

import contextlib
import inspect
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


# -- the entry point of every rule ----------------------------------------------------------------
def job_arguments(named_sections) -> dict:
    """{name: value} of the named entries of a rule's input, output and params, in that order.

    Snakemake hands lists (input functions, expand) as its own list type and single paths as
    strings; jobs get plain lists and strings. A name used twice is a mistake in the rule."""
    kwargs: dict = {}
    for section in named_sections:
        for name, value in section.items():
            if name in kwargs:
                raise ValueError(f"the name {name!r} is used twice among the rule's input, output and params")
            kwargs[name] = list(value) if isinstance(value, list) else value
    return kwargs


def job_name(rule: str) -> str:
    """The job a rule runs: the rule's name, or for rules a loop generates (one per training pack,
    ``train_pack__<study>__<k>``) the part before the first ``__``."""
    return rule.split("__", 1)[0]


def run(smk) -> None:
    """Run the job of a rule: ``JOBS[rule](**input, **output, **params)`` inside
    :func:`job_environment` (log file, thread count)."""
    job = JOBS[job_name(smk.rule)]
    kwargs = job_arguments((smk.input, smk.output, smk.params))
    if "progress" in inspect.signature(job).parameters:
        kwargs["progress"] = bool(smk.config["progress"])  # validated: the schema's default is filled
    with job_environment(smk.log[0] if smk.log else None, smk.threads):
        job(**kwargs)


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
def download(*, archive, entry: dict, config_key: str, progress: bool = True) -> None:
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
    fetch(url, archive, md5=src.get("md5"), sha256=sha256, manual_path=entry.get("manual_path"),
          manual_key=f"{config_key}.manual_path", progress=progress)
    write_provenance(Path(archive).parent, job="download", filename=f"provenance_{Path(archive).name}.json",
                     config_slice={"url": url, "md5": src.get("md5"), "sha256": sha256}, started=started)


def download_vgg19_weights(*, weights) -> None:
    """torchvision's ImageNet VGG-19 weights (Li 2019's VGG control arm), hash-checked by torch.hub."""
    from .neural.vgg_similarity import download_vgg19_weights as fetch_weights
    fetch_weights(Path(weights).parent)


def make_dataset(*, train, val, test, name: str, dataset_cfg: dict, archive=None) -> None:
    """One dataset in the prepared format: ``train``, ``val`` and ``test`` split files."""
    from .data import DATASET_BUILDERS, save_split
    started = time.time()
    built = DATASET_BUILDERS[dataset_cfg["source"]]({**dataset_cfg, "archive": archive or None})
    splits, classes = built
    superclass_of_class = getattr(built, "superclass_of_class", None)
    out = {"train": train, "val": val, "test": test}
    for split, (images, labels) in splits.items():
        save_split(out[split], images, labels, classes, superclass_of_class, getattr(built, "superclasses", None))
        print(f"{name}/{split}: {images.shape} uint8, {len(classes)} classes")
    write_provenance(Path(train).parent, job="make_dataset", config_slice=dataset_cfg, seed=dataset_cfg.get("seed"),
                     started=started)


def make_recording(*, recording, name: str, recording_cfg: dict, archive=None) -> None:
    """A recording in the documented format: simulated, or converted from a verified download."""
    if recording_cfg["source"] == "simulated":
        return simulate_recording(recording_cfg, recording)
    from .neural.cadena import cadena_recording
    started = time.time()
    rec = cadena_recording(archive or None, sha256=recording_cfg.get("sha256"),
                           train_fraction=recording_cfg["train_fraction"], config_key=f"recordings.{name}.sha256")
    rec.save(recording)
    print(f"recording {name}: {rec.n_images} images, {rec.n_repeats} repeats, {rec.n_neurons} neurons")
    write_provenance(Path(recording).parent, job="make_recording", config_slice=recording_cfg, started=started)


def simulate_recording(params: dict, out_path: str | Path) -> None:
    from .data.synthetic import make_stimulus_images
    from .neural.simulated_v1 import SimulatedV1, V1PopulationParams
    started = time.time()
    size = params["image_size"]
    images = make_stimulus_images(params.get("stimulus_dataset_seed", params["seed"]), params["n_images"], size)
    population = SimulatedV1(V1PopulationParams(image_size=size, **params["population"]), params["seed"])
    rec = population.record(images, params["repeats"], params["seed"], params["test_fraction"],
                            params["missing_fraction"])
    rec.save(out_path)
    print(f"recording: {rec.n_images} images, {rec.n_repeats} repeats, {rec.n_neurons} neurons")
    write_provenance(Path(out_path).parent, job="simulate_recording", config_slice=params,
                     seed=params["seed"], started=started)


# -- V1 predictive model --------------------------------------------------------------------------
def fit_v1_model(*, recording, model, metrics, v1_model_cfg: dict, device: str, progress: bool = True) -> dict:
    from .neural.recording import Recording
    from .neural.v1_model import fit_v1_model as fit, save_v1_model
    started = time.time()
    device = resolve_device(device)
    rec = Recording.load(recording)
    fitted, scores = fit(rec, device=device, progress=progress, **v1_model_cfg)
    save_v1_model(fitted, model)
    _write_json(scores, metrics)
    summary = {k: v for k, v in scores.items() if not isinstance(v, (list, dict))}
    print(json.dumps(summary))
    write_provenance(Path(model).parent, job="fit_v1_model", config_slice=v1_model_cfg,
                     seed=v1_model_cfg.get("seed"), device=device, started=started, extra={"metrics": summary})
    return scores


# -- neural targets -------------------------------------------------------------------------------
def similarity(*, recording, target, kind: str, options: dict, v1_model=None, model_similarity=None,
               vgg_weights=None, device: str = "cpu") -> None:
    """Write S_neural of one ``kind`` over all the recording's stimulus images.

    options: what this kind reads from the study's ``similarity`` settings (and nothing else, so
    that changing a setting reruns only the kinds it affects): shuffle_seed, rsm_metric,
    gaussian_other, image_size, vgg_weights."""
    from .neural.recording import Recording
    from .neural.rsm import TEACHERS, teacher_rsm
    from .neural.similarity import neural_similarity, shuffle_responses, shuffle_similarity
    # Only the kinds that run a network load torch (and have a device); the others are numpy on
    # the CPU and start about 3 s faster without it.
    runs_a_network = kind in ("model", "responses_model", "vgg")
    if runs_a_network:
        from .neural.v1_model import load_v1_model, predict_responses
        from .neural.vgg_similarity import vgg_similarity
    started = time.time()
    device = resolve_device(device) if runs_a_network else "cpu"
    rec = Recording.load(recording)
    if kind == "model":
        s = neural_similarity(predict_responses(load_v1_model(v1_model, device), rec.images, device))
    elif kind == "data":
        s = neural_similarity(rec.trial_average())
    elif kind == "shuffle":
        s = shuffle_similarity(np.load(model_similarity), options["shuffle_seed"])
    elif kind == "responses_model":  # Safarani 2021: the single-task V1 model's predictions [M, K]
        s = predict_responses(load_v1_model(v1_model, device), rec.images, device)
    elif kind == "responses_shuffle":  # the same responses, image identities permuted
        s = shuffle_responses(np.load(model_similarity), options["shuffle_seed"])
    elif kind in TEACHERS:
        s = teacher_rsm(kind, rec.trial_average(), metric=options["rsm_metric"], seed=options["shuffle_seed"],
                        gaussian_other=options.get("gaussian_other"))
    elif kind == "vgg":
        # no weights file: the config asked for a randomly initialised VGG-19 (tests, control)
        s = vgg_similarity(rec.images, options["image_size"], vgg_weights or None, seed=options["shuffle_seed"],
                           device=device)
    else:
        raise ValueError(f"similarity kind {kind!r}: expected model, data, shuffle, vgg, responses_model, "
                         f"responses_shuffle or one of {TEACHERS}")
    _save_npy(s, target)
    write_provenance(Path(target).parent, job=f"similarity_{kind}", filename=f"provenance_{kind}.json",
                     config_slice={"kind": kind, **options}, device=device, started=started)


def similarity_diagnostics(*, recording, targets: list, diagnostics, kinds: list[str]) -> dict:
    """What each target can teach (DESIGN.md section 8): spread, reliability, held-out fit.
    targets: one .npy per entry of ``kinds``."""
    from .neural.recording import Recording
    from .neural.similarity import target_diagnostics
    started = time.time()
    rec = Recording.load(recording)
    if len(kinds) != len(targets):
        raise ValueError(f"similarity_diagnostics: {len(targets)} targets for the kinds {kinds}")
    matrices = {kind: np.load(p) for kind, p in zip(kinds, targets)}
    diag = target_diagnostics(matrices, np.flatnonzero(rec.tiers == "test"), rec.responses)
    _write_json(diag, diagnostics)
    write_provenance(Path(diagnostics).parent, job="similarity_diagnostics", filename="provenance_diagnostics.json",
                     config_slice={"targets": sorted(matrices)}, started=started)
    print(json.dumps(diag, indent=1))
    return diag


def oracle_targets(*, oracle, recording, responses, targets, readout_cfg: dict, image_size: int,
                   device: str) -> dict:
    """Safarani 2021's MTL-oracle targets: a readout fitted on the oracle's frozen core (``layer``)
    to the single-task V1 model's predictions; its predictions on every stimulus image."""
    from .neural.recording import Recording
    from .regularisers.mtl import fit_oracle_targets
    from .train import load_classifier, stimuli_as_inputs
    started = time.time()
    device = resolve_device(device)
    model = load_classifier(oracle, device)
    rec = Recording.load(recording)
    # at the dataset's size and channels (the normalisation's), as training shows them; the model
    # resizes to its input_size itself
    stimuli = stimuli_as_inputs(rec.images, model.mean.shape[1], int(image_size))
    fitted, metrics = fit_oracle_targets(model, stimuli, rec.tiers, np.load(responses), readout_cfg["layer"],
                                         seed=readout_cfg["seed"], epochs=readout_cfg["epochs"],
                                         lr=readout_cfg["lr"], device=device)
    _save_npy(fitted, targets)
    print(json.dumps(metrics))
    write_provenance(Path(targets).parent, job="oracle_targets", filename="provenance_responses_oracle.json",
                     config_slice={**readout_cfg, "image_size": image_size}, seed=readout_cfg["seed"],
                     device=device, started=started, extra={"metrics": metrics, "oracle_model": str(oracle)})
    return metrics


# -- training and evaluation ----------------------------------------------------------------------
def _first_test_images(test_path, n: int | None):
    """(images, labels) of the first ``n`` test images (all for None): the same for every model."""
    from .data import load_split
    images, labels, _ = load_split(test_path)
    return (images[:n], labels[:n]) if n else (images, labels)


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
    from .data import load_split, load_superclasses
    from .neural.recording import Recording
    from .packed import PackedRun, train_runs
    from .train import TrainingConfig, resolve_precision
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
        if run["arm_cfg"]["regulariser"] == "mtl":
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


def evaluate_gaussian_noise(*, models: list, test_split, table, study: str, arm: str, seeds: list[int],
                            noise_cfg: dict, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per noise level of every seed's model of one arm, on the same noisy images
    (drawn once per arm: a paired comparison across models and arms)."""
    from .models import to_inference_layout
    from .robustness.noise import gaussian_noise_accuracies
    from .train import load_classifier
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
    _write_csv(frame, table)
    write_provenance(Path(table).parent, job="evaluate_gaussian_noise", filename=f"provenance_{arm}.json",
                     config_slice=noise_cfg, seed=seeds, device=device, started=started)
    return frame


def evaluate_adversarial(*, model, test_split, table, per_image, study: str, arm: str, seed: int, attack_cfg: dict,
                         device: str, progress: bool = True) -> pd.DataFrame:
    """Li 2019 section 4.2: minimal adversarial perturbations (Foolbox FMN) on a seeded subset of
    the test images, the same subset for every model; per-image sizes beside the tidy medians."""
    from .data import load_split
    from .robustness.adversarial import minimal_perturbations, perturbation_records
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    seed = int(seed)
    images, labels, _ = load_split(test_split)
    sizes = minimal_perturbations(load_classifier(model, device), images, labels,
                                  norms=tuple(attack_cfg["norms"]), n_images=attack_cfg["n_images"],
                                  seed=attack_cfg["seed"], steps=attack_cfg["steps"], device=device,
                                  progress=progress)
    _write_csv(sizes, per_image)
    frame = pd.DataFrame(perturbation_records(sizes, study=study, arm=arm, seed=seed))
    _write_csv(frame, table)
    write_provenance(Path(table).parent, job="evaluate_adversarial", filename=f"provenance_seed{seed}.json",
                     config_slice=attack_cfg, seed=seed, device=device, started=started)
    return frame


def evaluate_corruptions(*, models: list, histories: list, test_split, table, correct, study: str, arm: str,
                         seeds: list[int], corruptions_cfg: dict, device: str, progress: bool = True) -> pd.DataFrame:
    """Accuracy per corruption x severity (and clean) of every seed's model of one arm on the first
    ``n_images`` test images, the same corrupted images for every model (generated once per arm);
    the MTL head's neural prediction performance from each training history (the epoch whose
    weights were kept); per-image correctness [seed, condition, image] for the bootstrap."""
    from .models import to_inference_layout
    from .robustness.corruption_accuracy import corruption_accuracy
    from .train import load_classifier
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
    _write_csv(frame, table)
    out_npz = Path(correct)
    tmp = out_npz.with_name(out_npz.name + ".tmp.npz")
    np.savez_compressed(tmp, correct=per_image, seeds=np.asarray(seeds),
                        corruption=np.array([c for c, _ in conditions]), severity=np.array([s for _, s in conditions]))
    os.replace(tmp, out_npz)
    write_provenance(Path(table).parent, job="evaluate_corruptions", filename=f"provenance_{arm}.json",
                     config_slice=spec, seed=list(seeds), device=device, started=started)
    return frame


# -- statistics and figures -----------------------------------------------------------------------
def stats(*, tables: list, summary, tests, baseline: str, controls: list, statistics: dict) -> None:
    """Summary per arm and level; every arm vs the baseline, and vs each control arm (e.g. the
    regulariser arms vs Shuffle: does the real target beat a target with the same statistics?).
    The ``baseline`` column of the tests table says which comparison a row is; each baseline's rows
    are one family for the multiple-comparison correction. statistics: the study's ``statistics``
    (``test``: paired | welch, ``correction``: holm | bh | none). Bookkeeping metrics (the number
    of attacked images) are summarised, not tested."""
    from .stats import BOOKKEEPING_METRICS, METRIC_BETTER, compare_to_baseline, summarise
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    _write_csv(summarise(tidy), summary)
    outcomes = tidy[~tidy["metric"].isin(BOOKKEEPING_METRICS)]
    comparisons = [compare_to_baseline(outcomes, baseline=b, better=METRIC_BETTER, test=statistics["test"],
                                       correction=statistics["correction"]) for b in [baseline, *controls]]
    _write_csv(pd.concat(comparisons, ignore_index=True), tests)
    write_provenance(Path(tests).parent, job="stats", filename=f"provenance_{Path(tests).stem}.json",
                     config_slice={"baseline": baseline, "controls": list(controls), "statistics": dict(statistics),
                                   "inputs": [str(p) for p in tables]}, started=started)


def tidy_arm(arm_name: str, arm: dict) -> str:
    """The arm a model is shown as: a label-noise sweep's copy is its base arm at another level."""
    from .config import sweep_arm_name
    base = arm.get("sweep_of")
    if base and "label_noise" in arm and arm_name == sweep_arm_name(base, "label_noise", arm["label_noise"]):
        return base
    return arm_name


def stats_learning_curves(*, histories: list, tidy, summary, tests, study: str, runs: list, arms_cfg: dict,
                          baseline: str, metrics: list | None, statistics: dict) -> None:
    """Federer et al. 2020's statistics: the curves as mean ± SEM per fraction of corrupted labels,
    epoch and arm (descriptive), and at the final epoch each arm vs the r = 0 arm (the baseline)
    trained on the same labels (:func:`neurobias.stats.final_epoch_tests`: one-tailed in the
    direction that is better, ``statistics.test`` paired over seeds or Welch, p adjusted by
    ``statistics.correction`` over the whole table).
    runs: the (arm, seed) of each history, in order; arms_cfg: :func:`neurobias.rule_params.learning_curve_arms`."""
    from .stats import GROUP_KEYS, final_epoch_tests, learning_curve_records, summarise
    started = time.time()
    if len(runs) != len(histories):
        raise ValueError(f"stats_learning_curves: {len(histories)} histories for {len(runs)} (arm, seed) runs")
    frames = []
    for (arm_name, seed), path in sorted(zip(map(tuple, runs), histories)):
        arm = arms_cfg[arm_name]
        kw = {"metrics": metrics} if metrics else {}
        frames.append(learning_curve_records(pd.read_csv(path), study=study, arm=tidy_arm(arm_name, arm),
                                             seed=seed, label_noise=arm.get("label_noise", 0.0),
                                             r=arm.get("r", 0.0) if arm["regulariser"] == "rsm" else 0.0, **kw))
    records = pd.concat(frames, ignore_index=True)
    _write_csv(records, tidy)
    by = (*GROUP_KEYS, "epoch")
    per_arm = summarise(records, by=(*by, "arm"))
    r_of = records.groupby("arm")["r"].first()
    per_arm["r"] = per_arm["arm"].map(r_of)
    _write_csv(per_arm, summary)
    comparisons = final_epoch_tests(records, baseline=baseline, test=statistics["test"],
                                    correction=statistics["correction"])
    comparisons["r"] = comparisons["arm"].map(r_of)
    _write_csv(comparisons, tests)
    write_provenance(Path(tests).parent, job="stats_learning_curves", filename="provenance_learning_curves.json",
                     config_slice={"baseline": baseline, "runs": [list(r) for r in runs], "metrics": metrics,
                                   "statistics": dict(statistics), "inputs": sorted(str(p) for p in histories)},
                     started=started)


def _significance_note(tests: pd.DataFrame, versus: str = "baseline", metrics=None) -> str:
    """The marks and the test that made them, worded from the tests table itself."""
    from .stats import describe_tests
    return f"* p < 0.05, ** p < 0.001 ({describe_tests(tests, versus, metrics)})."


def figure_adversarial(*, tables: list, tests, pdf, png, study: str, baseline: str, n_seeds: int, note: str) -> None:
    from .figures import FIGURES
    from .figures.adversarial import METRICS
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    tidy = tidy[tidy["metric"].isin(METRICS)]
    comparisons = pd.read_csv(tests)
    comparisons = comparisons[comparisons["baseline"] == baseline]  # stars: each arm vs the baseline
    caption = note + f" n = {n_seeds} seeds per arm; median minimal " \
        "perturbation (Foolbox FMN) per model; bars mean ± SEM; " + \
        _significance_note(comparisons, metrics=METRICS)
    FIGURES["adversarial"](tidy, comparisons, title=f"{study}: minimal adversarial perturbation",
                           note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_adversarial", filename="provenance_adversarial.json",
                     config_slice={"study": study, "baseline": baseline, "n_seeds": n_seeds}, started=started)


def figure_noise_robustness(*, summary, tests, test_split, pdf, png, study: str, baseline: str, n_seeds: int,
                            note: str) -> None:
    from .data import load_split
    from .figures import FIGURES
    started = time.time()
    chance = 1.0 / len(load_split(test_split)[2])
    comparisons = pd.read_csv(tests)
    comparisons = comparisons[comparisons["baseline"] == baseline]  # stars: each arm vs the baseline
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; " + _significance_note(comparisons)
    FIGURES["noise_robustness"](pd.read_csv(summary), comparisons,
                                title=f"{study}: accuracy under Gaussian noise",
                                note=caption.strip(), out_pdf=pdf, out_png=png, chance=chance)
    write_provenance(Path(pdf).parent, job="figure_noise_robustness", filename="provenance_noise_robustness.json",
                     config_slice={"study": study, "baseline": baseline, "n_seeds": n_seeds}, started=started)


def figure_federer(*, summary, tests, pdf, png, figure: str, study: str, roles: dict, architecture: str,
                   n_seeds: int, note: str) -> None:
    """Fig. 6 or Fig. 7 of Federer et al. 2020 (``figure``: federer_fig6 | federer_fig7);
    roles: :func:`neurobias.rule_params.federer_roles`. Curves are mean ± SEM (descriptive); the
    marks come from the final-epoch tests."""
    from .figures import FIGURES
    started = time.time()
    comparisons = pd.read_csv(tests)
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; marks at the final epoch only: " + \
        _significance_note(comparisons, "r = 0 on the same labels")
    label = {"federer_fig6": "Fig. 6: neural data and corrupted labels",
             "federer_fig7": "Fig. 7: teacher variants and r"}[figure]
    FIGURES[figure](pd.read_csv(summary), comparisons, roles=roles,
                    title=f"{study} ({architecture}): {label}",
                    note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job=f"figure_{figure}", filename=f"provenance_{figure}.json",
                     config_slice={"study": study, "n_seeds": n_seeds, "roles": roles}, started=started)


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
    from .data import load_split
    from .neural.recording import Recording
    from .predictivity import layer_explained_variance
    from .models import CPU_EVAL_BATCH_SIZE, to_inference_layout
    from .robustness.manipulations import manipulation_accuracies
    from .robustness.pgd import is_stochastic, pgd_accuracy, white_box_records
    from .train import evaluate, load_classifier
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
                                       device=device, progress=False)

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
    _write_csv(frame, table)
    write_provenance(Path(table).parent, job="brain_likeness", filename=f"provenance_{arm}.json",
                     config_slice={"params": brain_likeness_cfg, "layers": layers, "recordings": recording_names},
                     device=device, started=started)
    return frame


def model_table(frames: list[pd.DataFrame], architectures: dict, noise_frames: list[pd.DataFrame] = ()) -> pd.DataFrame:
    """One row per trained model: its brain-likeness (best layer's V1 explained variance per
    recording) and its robustness (white-box accuracy, normalised by clean accuracy as Dapello,
    mean Gaussian-noise accuracy over sigma > 0 where evaluated, mean accuracy and entropy over
    the manipulations)."""
    tidy = pd.concat(frames, ignore_index=True)
    keys = ["study", "arm", "seed"]
    out = tidy[keys].drop_duplicates().reset_index(drop=True)
    out["architecture"] = out["study"].map(architectures)

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


def brain_likeness_analysis(*, brain: list, noise: list, models, correlations, architectures: dict) -> None:
    """The table of all models and the correlations of V1 explained variance with each robustness
    measure (Pearson r, p, n), across all models and within each study.
    architectures: {study: architecture}."""
    from .stats import correlate
    started = time.time()
    table = model_table([pd.read_csv(p) for p in brain], architectures, [pd.read_csv(p) for p in noise])
    _write_csv(table, models)
    ys = [c for c in ROBUSTNESS_COLUMNS if c in table.columns]
    corr = []
    for x in sorted(c for c in table.columns if c.startswith("v1_ev_")):
        pooled = correlate(table, x, ys).assign(study="all")
        corr += [pooled, correlate(table, x, ys, by=("study",))]
    _write_csv(pd.concat(corr, ignore_index=True)[["study", "x", "y", "r", "p", "n"]], correlations)
    write_provenance(Path(models).parent, job="brain_likeness_analysis", filename="provenance_analysis.json",
                     config_slice={"architectures": architectures, "inputs": [str(p) for p in [*brain, *noise]]},
                     started=started)


def figure_dapello(*, models, correlations, pdf, png, recording: str, notes: list[str]) -> None:
    """Dapello Fig. 1 over every analysed model, against V1 explained variance on ``recording``
    (the first analysed study's own; every study's own one is scored)."""
    from .figures import FIGURES
    started = time.time()
    table, corr = pd.read_csv(models), pd.read_csv(correlations)
    x = f"v1_ev_{recording}"
    caption = " ".join(sorted(set(notes) - {""})) + f" One point per trained model (n = {len(table)}); " \
        "line: least squares; r, p: Pearson across models."
    FIGURES["dapello_fig1"](table, corr, x=x, title="Brain-likeness vs robustness (after Dapello et al. 2020, Fig. 1)",
                            note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_dapello", filename="provenance_dapello_fig1.json",
                     config_slice={"x": x, "models": len(table)}, started=started)


def figure_geirhos(*, tables: list, test_split, pdf, png, study: str, n_seeds: int, note: str) -> None:
    from .data import load_split
    from .figures import FIGURES
    started = time.time()
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    n_classes = len(load_split(test_split)[2])  # entropy's maximum is log2 of it
    caption = note + f" n = {n_seeds} seeds per arm; mean ± SEM; " \
        "entropy of the distribution of responses over classes (Geirhos et al. 2018)."
    FIGURES["geirhos_fig3"](tidy, n_classes=n_classes,
                            title=f"{study}: image manipulations (after Geirhos et al. 2018, Fig. 3)",
                            note=caption.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_geirhos", filename="provenance_geirhos_fig3.json",
                     config_slice={"study": study, "n_seeds": n_seeds}, started=started)


# -- Safarani 2021: corruption robustness ---------------------------------------------------------
def safarani_arms_table(arms_cfg: dict) -> pd.DataFrame:
    """arm, base_arm (the arm a batch-ratio sweep copied, else itself), batch_ratio (NaN without MTL)."""
    return pd.DataFrame([{"arm": name, "base_arm": arm.get("sweep_of") or name,
                          "batch_ratio": float(arm["batch_ratio"]) if arm["regulariser"] == "mtl" else float("nan")}
                         for name, arm in arms_cfg.items()])


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


def stats_corruptions(*, tables: list, correct: list, accuracy, scores, contrasts, per_seed, models, regression,
                      study: str, arms: list[str], arms_cfg: dict, baseline: str, controls: list[str],
                      bootstrap_cfg: dict, pools: list[str]) -> None:
    """Safarani 2021's statistics: accuracy per arm x corruption x severity (mean, SEM over seeds);
    robustness scores relative to the baseline, overall and per category, with bootstrapped
    intervals (test images resampled in pairs across models, and each arm's seeds); the same
    scores relative to each control arm (``contrasts``, column ``reference``: e.g. MTL-monkey over
    MTL-shuffled, whose interval excluding 1 says the V1 targets matter beyond the second task);
    per-seed scores; one row per model; the 2-factor OLS of robustness on neural prediction
    performance and clean accuracy over each batch-ratio pool (``pools``). correct: per-image
    correctness of each arm's seeds, one file per arm in ``arms`` order; arms_cfg:
    :func:`neurobias.rule_params.corruption_arms`."""
    from .robustness.corruptions import CATEGORIES
    from .stats import (bootstrap_robustness, model_robustness_table, robustness_scores_per_seed, summarise,
                        two_factor_regression)
    started = time.time()
    if len(arms) != len(correct):
        raise ValueError(f"stats_corruptions: {len(correct)} correctness files for {len(arms)} arms")
    tidy = pd.concat([pd.read_csv(p) for p in tables], ignore_index=True)
    _write_csv(summarise(tidy[tidy["metric"] == "accuracy"],
                         by=("study", "evaluation", "condition", "category", "level", "metric", "arm")), accuracy)
    per_image, conditions = _load_correct(dict(zip(arms, correct)))

    def scores_against(reference: str) -> pd.DataFrame:
        return bootstrap_robustness(per_image, conditions, reference, CATEGORIES,
                                    repetitions=bootstrap_cfg["repetitions"], seed=bootstrap_cfg["seed"],
                                    study=study)

    against_baseline = scores_against(baseline)
    _write_csv(against_baseline, scores)
    # the same image and seed draws for every reference (one seeded generator per call)
    against_controls = [scores_against(c).assign(reference=c) for c in controls]
    _write_csv(pd.concat(against_controls, ignore_index=True) if against_controls
               else pd.DataFrame(columns=[*against_baseline.columns, "reference"]), contrasts)
    _write_csv(robustness_scores_per_seed(tidy, baseline, CATEGORIES), per_seed)
    table = model_robustness_table(tidy, safarani_arms_table(arms_cfg), baseline, CATEGORIES)
    _write_csv(table, models)
    fitted = two_factor_regression(table[table["pool"].isin(pools)], by=("pool",))
    _write_csv(fitted, regression)
    print(fitted.to_string())
    write_provenance(Path(scores).parent, job="stats_corruptions", filename="provenance_corruptions.json",
                     config_slice={"baseline": baseline, "controls": list(controls), "bootstrap": bootstrap_cfg,
                                   "pools": pools}, started=started)


def figure_arms(arms: list[str]) -> list[str]:
    """The arms in Safarani's order where the names are his, else in the config's order."""
    from .figures.safarani import SAFARANI_ARMS
    return sorted(arms, key=lambda a: (SAFARANI_ARMS.index(a) if a in SAFARANI_ARMS else len(SAFARANI_ARMS),
                                       arms.index(a)))


def figure_safarani_fig3(*, scores, per_seed, models, regression, pdf, png, panel: str, study: str, arms: list[str],
                         baseline: str, n_seeds: int, repetitions: int, note: str) -> None:
    """Fig. 3A (per category), 3B (overall) or 3C (robustness vs neural prediction); arms:
    the hand-written arms (no sweep copies); repetitions: the bootstrap's, for the caption."""
    from .figures import FIGURES
    started = time.time()
    if panel in ("a", "b"):
        score_table = pd.read_csv(scores)
        level = int(round(100 * float(score_table["level"].iloc[0]))) if "level" in score_table and len(score_table) else 95
        note += (f" Robustness score: mean over corruptions of accuracy (mean over severities and {n_seeds} seeds) "
                 f"relative to {baseline}; bars: {level} % bootstrap intervals "
                 f"({repetitions} resamples of test images and seeds); dots: single seeds.")
        FIGURES[f"safarani_fig3{panel}"](score_table, score_table, per_seed=pd.read_csv(per_seed), arms=figure_arms(arms),
                                         title=f"{study}: robustness {'per category' if panel == 'a' else 'overall'}",
                                         note=note.strip(), out_pdf=pdf, out_png=png)
    else:
        fitted = pd.read_csv(regression)
        pools = list(dict.fromkeys(fitted["pool"])) if len(fitted) else []
        note += (" One point per model (batch-ratio sweep x seeds); line: OLS robustness ~ neural prediction + "
                 "clean accuracy, drawn at the pool's mean clean accuracy.")
        FIGURES["safarani_fig3c"](pd.read_csv(models), fitted, pools=pools,
                                  title=f"{study}: robustness vs neural prediction",
                                  note=note.strip(), out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job=f"figure_safarani_fig3{panel}",
                     filename=f"provenance_safarani_fig3{panel}.json",
                     config_slice={"study": study, "n_seeds": n_seeds}, started=started)


def figure_safarani_fig2(*, accuracy, models: list, test_split, pdf, png, study: str, arms: list[str], seed: int,
                         corruptions_cfg: dict, note: str, device: str = "cpu") -> None:
    """Fig. 2: corruptions ranked by the MTL arm's accuracy relative to the baseline (mean over
    severities and seeds); for the best, median and worst one, a test image that both networks
    classify correctly when clean, clean and at ``example_severity`` (the very image the evaluation
    used), with both networks' predictions (seed ``seed``). arms: (baseline arm, MTL arm) as
    :func:`neurobias.config.example_arms` picks them; models: their model.pt (one if they are the
    same arm)."""
    import torch

    from .data import load_split
    from .figures import FIGURES
    from .figures.safarani import select_example_corruptions
    from .robustness.corruption_accuracy import corrupted_batch
    from .train import load_classifier
    started = time.time()
    device = resolve_device(device)
    spec = corruptions_cfg
    base, mtl = arms
    shown = list(dict.fromkeys((base, mtl)))
    if len(models) != len(shown):
        raise ValueError(f"figure_safarani_fig2: {len(models)} models for the arms {shown}")
    acc = pd.read_csv(accuracy)
    acc = acc[(acc["metric"] == "accuracy") & (acc["condition"] != "clean")]
    per = acc.groupby(["arm", "condition"])["mean"].mean().unstack("arm")
    ratios = (per[mtl] / per[base]).replace([np.inf, -np.inf], np.nan).dropna()
    chosen = select_example_corruptions(ratios)
    images, labels, classes = load_split(test_split)
    n = spec.get("n_images") or len(images)
    images, labels = images[:n], labels[:n]
    networks = {arm: load_classifier(path, device) for arm, path in zip(shown, models)}
    batch = spec["batch_size"]
    with torch.no_grad():
        clean_pred = {a: torch.cat([m(images[i:i + batch].to(device).float() / 255).argmax(1).cpu()
                                    for i in range(0, n, batch)]) for a, m in networks.items()}
    both_right = torch.ones(n, dtype=torch.bool)
    for p in clean_pred.values():
        both_right &= p == labels
    index = int(torch.nonzero(both_right)[0]) if both_right.any() else 0
    severity = spec["example_severity"]
    start = index - index % batch  # regenerate the evaluation's batch, so the image is the one scored
    rows = []
    for row, corruption in chosen.items():
        x = corrupted_batch(images[start:min(start + batch, n)].to(device), spec["corruptions"], corruption, severity,
                            spec["seed"], start)[index - start:index - start + 1]
        record = {"row": row, "corruption": corruption, "severity": severity, "ratio": float(ratios[corruption]),
                  "label": classes[int(labels[index])], "clean_image": images[index].numpy(),
                  "corrupted_image": x[0].cpu().numpy()}
        with torch.no_grad():
            for arm, m in networks.items():
                record[f"{arm}_clean"] = classes[int(clean_pred[arm][index])]
                record[f"{arm}_corrupted"] = classes[int(m(x.float() / 255).argmax(1))]
        rows.append(record)
    caption = (note + f" Test image {index}; corruptions where {mtl} gains most, a median "
               f"amount and least relative to {base} (accuracy ratio, mean over severities and seeds); severity "
               f"{severity}; predictions of seed {seed}.").strip()
    FIGURES["safarani_fig2"](rows, arms=tuple(shown), title=f"{study}: example corruptions",
                             note=caption, out_pdf=pdf, out_png=png)
    write_provenance(Path(pdf).parent, job="figure_safarani_fig2", filename="provenance_safarani_fig2.json",
                     config_slice={"study": study, "arms": [base, mtl], "image": index,
                                   "corruptions": chosen}, device=device, started=started)


# Rule name -> job function: the rules' one hop into the package (see :func:`run`).
JOBS = {f.__name__: f for f in (
    download, download_vgg19_weights, make_dataset, make_recording, fit_v1_model, similarity,
    similarity_diagnostics, oracle_targets, train, train_pack, evaluate_gaussian_noise, evaluate_adversarial,
    evaluate_corruptions, stats, stats_learning_curves, stats_corruptions, figure_noise_robustness,
    figure_adversarial, figure_federer, figure_safarani_fig3, figure_safarani_fig2, brain_likeness,
    brain_likeness_analysis, figure_dapello, figure_geirhos)}
