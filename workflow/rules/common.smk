# Config validation (before any job) and the input functions and config slices the rules share.
#
# Every value a job uses reaches it through its rule's input, output or params (a slice of the
# config per rule, never the whole config), so Snakemake's params trigger reruns exactly the jobs
# a config change affects. Every rule runs ../scripts/run.py, which calls the package function
# named after the rule (neurobias.jobs.JOBS) with the rule's named input, output and params.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, also without `pip install -e`

from neurobias import rule_params
from neurobias.config import (ConfigError, arm_model, example_arms, oracle_readout, resolve_extends,
                              similarity_targets, validate_config)
from neurobias.layer_names import default_ev_layers
from neurobias.plugins import PluginError
from neurobias.registry import RegistryError, evaluations, targets
from neurobias.sources import VGG19_FILE, download_filename, image_size_of, source_spec

try:
    resolve_extends(config, workflow.basedir)  # a preset's `extends:` is relative to the repository
    # imports the config's plugins (their declarations extend the schema), then validates; also
    # fills in every default the schema declares
    validate_config(config)
except (ConfigError, PluginError, RegistryError) as e:
    raise WorkflowError(f"invalid configuration: {e}")

STUDIES = config.get("studies_to_run") or list(config["studies"])
DEVICE = config["device"]
JOB_SCRIPT = "../scripts/run.py"


# The order in which ready jobs start: earlier stages first. Among the jobs whose inputs exist,
# Snakemake starts the set with the largest summed priority that fits the free cores (ties broken
# arbitrarily). Without an order, short evaluations and figures took cores while training packs
# waited, and the run ended on one busy core with the other idle (the default run on 2 cores:
# 63.4 core-seconds idle, 35.0 with this order; docs/performance.md). Upstream jobs gate everything
# after them, and the later stages' short jobs fill the cores best at the end
# (benchmarks/schedule_replay.py replays a finished run both ways).
# Each level is ten times the next, so one job of an earlier stage outweighs a set of later ones
# (the 2-thread V1 model fit waits for both cores but is not passed over for two 1-core jobs).
STAGE_PRIORITY = {"data": 10000,        # downloads, datasets, recordings, the V1 model fit
                  "targets": 1000,      # neural similarity matrices and MTL targets
                  "training": 100,
                  "evaluation": 10,     # robustness and brain-likeness scores of trained models
                  "statistics": 1,
                  "figures": 0}


def study_cfg(study):
    return config["studies"][study]


def job_resources(kind):
    """Cluster resources for 'gpu_jobs' or 'cpu_jobs' from the config (used by --profile slurm)."""
    res = dict(config["resources"].get(kind, {}))
    res.pop("threads", None)
    return res


def pack_resources(n_runs):
    """A training pack's cluster resources: a training job's, with its runtime once per run (the
    sequential engine's time; with the stacked engine, whose runs train side by side, an upper
    bound, which docs/cluster.md tells users they can lower)."""
    res = job_resources("gpu_jobs")
    if "runtime" in res:
        res["runtime"] = res["runtime"] * n_runs
    return res


def job_threads(kind, default):
    return config["resources"].get(kind, {}).get("threads", default)


def archive_of(table, name):
    """The file the dataset or recording ``config[table][name]`` is built from: its downloaded
    archive, the user's own file its source names (e.g. a recording's ``path``: a missing one is
    said with its config key before any job), or [] for embedded sources."""
    entry = config[table][name]
    spec = source_spec(entry, table)
    if spec.local_file is not None:
        path = entry[spec.local_file]
        if not Path(path).exists():
            raise WorkflowError(f"config field '{table}.{name}.{spec.local_file}': no file {path} (a relative "
                                f"path is relative to the working directory, {Path.cwd()})")
        return path
    name = download_filename(entry, table)
    return [] if name is None else f"results/downloads/{name}"


def download_entry(filename):
    """(config key, entry) of the first dataset or recording that downloads this file."""
    for table in ("datasets", "recordings"):
        for name, entry in config[table].items():
            if download_filename(entry, table) == filename:
                return f"{table}.{name}", entry
    raise WorkflowError(f"no configured dataset or recording downloads {filename!r}")


def split_path(study, split):
    return f"results/data/{study_cfg(study)['dataset']}/{split}.pt"


def recording_path(study):
    return f"results/neural/{study_cfg(study)['recording']}/recording.npz"


def dataset_split(split):
    """Input function: a split of the study's dataset."""
    return lambda wc: split_path(wc.study, split)


def recording_of(wc):
    return recording_path(wc.study)


def seed_paths(pattern):
    """Input function: ``pattern`` for every seed of the study, study and arm from the wildcards."""
    return lambda wc: expand(pattern, study=wc.study, arm=wc.arm, seed=study_cfg(wc.study)["seeds"])


def study_seeds(wc):
    return study_cfg(wc.study)["seeds"]


def n_seeds(wc):
    return len(study_cfg(wc.study)["seeds"])


def figure_note(wc):
    return study_cfg(wc.study)["figure_note"]


def evaluation_tables(study, evaluation):
    """The tidy CSVs of one evaluation of a study, every arm and seed: one per arm (all seeds;
    cheap per model, so one job per arm saves the per-job start-up), or for an evaluation declared
    ``per_seed`` (adversarial attacks: minutes per model) one per (arm, seed)."""
    arms, seeds = study_cfg(study)["arms"], study_cfg(study)["seeds"]
    if not evaluations()[evaluation].per_seed:
        return [f"results/eval/{study}/{evaluation}/{arm}.csv" for arm in arms]
    return [f"results/eval/{study}/{evaluation}/{arm}/seed{seed}.csv" for arm in arms for seed in seeds]


def all_targets():
    """Every study's diagnostics and the statistics and figures of each evaluation it runs (as the
    evaluation declares them), and brain-likeness over all models."""
    targets = []
    for study in STUDIES:
        targets.append(f"results/similarity/{study}/diagnostics.json")
        for evaluation in study_cfg(study)["evaluations"]:
            targets += evaluations()[evaluation].study_products(study)
    if config.get("brain_likeness") is not None:  # Dapello 2020 / Geirhos 2018 over all models
        targets += ["results/brain_likeness/correlations.csv", "figures/brain_likeness/dapello_fig1.pdf",
                    "figures/brain_likeness/dapello_fig1.png"]
        if config["brain_likeness"].get("manipulations") is not None:
            for study in config["brain_likeness"].get("studies") or STUDIES:
                targets += [f"figures/{study}/geirhos_fig3.pdf", f"figures/{study}/geirhos_fig3.png"]
    return targets


wildcard_constraints:
    study=r"[A-Za-z0-9_\-]+",
    arm=r"[A-Za-z0-9_.\-]+",
    seed=r"\d+",
    kind=r"[a-z_]+",
