"""Configuration: validation against ``workflow/schemas/config.schema.yaml`` plus the cross-field
checks a schema cannot express, runtime device choice, and the per-study slices jobs receive.

:func:`validate_config` is called by the Snakefile before any job runs; every error names the
field (``studies.demo.arms.shuffle.alpha``) and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
RESNET_TAPS = ("stem", "layer1", "layer2", "layer3", "layer4")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


def load_schema(path: str | Path | None = None) -> dict:
    with open(path or SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check_layers(field: str, layers) -> None:
    bad = [t for t in layers if t not in RESNET_TAPS]
    if bad:
        raise ConfigError(f"config field '{field}': unknown layer(s) {bad}; resnet taps are {list(RESNET_TAPS)}")


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Raise :class:`ConfigError` on the first problem; fill schema defaults; return the config."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = jsonschema.exceptions.best_match(errors)
        # oneOf errors hide the real cause in their context; surface the deepest one.
        while e.context:
            e = jsonschema.exceptions.best_match(e.context)
        raise ConfigError(f"config field '{_field(e.absolute_path)}': {e.message}")
    config.setdefault("device", "auto")
    config.setdefault("progress", True)
    for name, study in config["studies"].items():
        where = f"studies.{name}"
        for key, table in (("dataset", "datasets"), ("recording", "recordings")):
            if study[key] not in config[table]:
                raise ConfigError(f"config field '{where}.{key}': {study[key]!r} is not one of the "
                                  f"configured {table}: {sorted(config[table])}")
        baseline = study.setdefault("baseline_arm", "none")
        if baseline not in study["arms"]:
            raise ConfigError(f"config field '{where}.baseline_arm': {baseline!r} is not one of the arms "
                              f"{sorted(study['arms'])}")
        unknown = [a for a in study.get("control_arms", []) if a not in study["arms"]]
        if unknown:
            raise ConfigError(f"config field '{where}.control_arms': {unknown} are not arms {sorted(study['arms'])}")
        _check_layers(f"{where}.model.diagnostic_layers", study["model"].get("diagnostic_layers", []))
        for arm_name, arm in study["arms"].items():
            if arm["regulariser"] == "none":
                continue
            for key in ("target", "alpha", "layers"):
                if key not in arm:
                    raise ConfigError(f"config field '{where}.arms.{arm_name}.{key}': required for the "
                                      f"{arm['regulariser']!r} regulariser")
            _check_layers(f"{where}.arms.{arm_name}.layers", arm["layers"])
        studies = config.get("studies_to_run")
        if studies:
            unknown = [s for s in studies if s not in config["studies"]]
            if unknown:
                raise ConfigError(f"config field 'studies_to_run': unknown {unknown}; studies are {sorted(config['studies'])}")
    return config


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; explicit values are checked."""
    import torch
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config field 'device': {requested!r} requested but no CUDA device is visible")
    return requested


def similarity_targets(study: dict) -> list[str]:
    """The S_neural kinds a study's arms need, always including 'model' (the diagnostic target)."""
    kinds = {"model"} | {arm["target"] for arm in study["arms"].values() if arm["regulariser"] != "none"}
    return sorted(kinds)
