# Config validation (before any job) and the input functions the other rule files share.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, also without `pip install -e`

from neurobias.config import ConfigError, similarity_targets, validate_config

try:
    validate_config(config)
except ConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}")

STUDIES = config.get("studies_to_run") or list(config["studies"])
DEVICE = config["device"]
PROGRESS = config["progress"]


def study_cfg(study):
    return config["studies"][study]


def job_resources(kind):
    """Cluster resources for 'gpu_jobs' or 'cpu_jobs' from the config (used by --profile slurm)."""
    res = dict(config.get("resources", {}).get(kind, {}))
    res.pop("threads", None)
    return res


def job_threads(kind, default):
    return config.get("resources", {}).get(kind, {}).get("threads", default)


def all_targets():
    targets = []
    for study in STUDIES:
        targets += [f"figures/{study}/noise_robustness.pdf", f"figures/{study}/noise_robustness.png",
                    f"results/stats/{study}/gaussian_noise_tests.csv",
                    f"results/similarity/{study}/diagnostics.json"]
    return targets


def target_path(study, arm):
    a = study_cfg(study)["arms"][arm]
    return [] if a["regulariser"] == "none" else f"results/similarity/{study}/{a['target']}.npy"


wildcard_constraints:
    study=r"[A-Za-z0-9_\-]+",
    arm=r"[A-Za-z0-9_\-]+",
    seed=r"\d+",
    kind=r"[a-z_]+",
