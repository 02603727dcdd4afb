"""Configuration: validation against the packaged ``neurobias/schemas/config.schema.yaml`` plus the cross-field
checks a schema cannot express, runtime device choice, and the per-study slices jobs receive.

:func:`validate_config` is called by the Snakefile before any job runs; every error names the
field (``studies.demo.arms.shuffle.alpha``) and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import jsonschema
import yaml

from .layer_names import architecture_options, taps_for, vone_enabled
from .registry import (RegistryError, architectures, dataset_sources, evaluations, generation, recording_sources,
                       regularisers, targets)
from .sources import image_size_of
from .stacking_rules import unsupported_reason

# package data (pyproject), so an installed neurobias validates configs without the repository;
# workflow/schemas/config.schema.yaml links here, where snakemake-workflows users look for it
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
# Sweeps: config key -> (arm field it sets, key of its values, name infix, regulariser it needs)
SWEEPS = {"label_noise": ("label_noise", "fractions", "labelnoise", None),
          "r": ("r", "values", "r", "rsm"),
          "batch_ratio": ("batch_ratio", "values", "ratio", "mtl")}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


def load_schema(path: str | Path | None = None) -> dict:
    """The config schema: the YAML file (``path``, default the packaged one) with what the declared
    kinds add (:func:`add_declarations`)."""
    with open(path or SCHEMA_PATH) as f:
        return add_declarations(yaml.safe_load(f))


def _add_property(properties: dict, name: str, schema: dict, spec, where: str) -> None:
    """Add one declared field to a section's properties; a field two declarations give different
    schemas is an error naming both (descriptions may differ)."""
    def essence(sub):
        return {k: v for k, v in sub.items() if k not in ("description", "default")}
    if name in properties and essence(properties[name]) != essence(schema):
        raise RegistryError(f"{spec.kind} {spec.name!r} ({spec.origin}) declares the field '{where}.{name}' as "
                            f"{essence(schema)}, but it is already {essence(properties[name])}")
    properties.setdefault(name, schema)


def _source_branches(section: dict, registry, where: str, common: dict | None = None) -> None:
    """A config entry with a ``source``: the declared sources' names, and per source a closed
    schema of its keys (if source is X then X's keys, and the ``common`` ones every source of the
    table has: a recording's ``v1_model``)."""
    section["properties"] = {"source": {"enum": registry.names()}}
    section["allOf"] = [
        {"if": {"properties": {"source": {"const": spec.name}}},
         "then": {"type": "object", "additionalProperties": False,
                  "required": ["source", *spec.schema.get("required", [])],
                  "properties": {"source": {"const": spec.name, "description": spec.doc},
                                 **(common or {}), **spec.schema.get("properties", {})}}}
        for spec in registry]


# Figures the workflow draws besides the evaluations' own products: a generic evaluation may not take
# their names (its figure is figures/{study}/{name}.pdf).
_OTHER_FIGURES = frozenset({"geirhos_fig3", "dapello_fig1"})


def _check_declarations() -> None:
    """What a declaration must satisfy for the workflow to run it, said with the plugin named."""
    taken = set(_OTHER_FIGURES)
    for spec in evaluations():
        if not spec.generic:
            taken |= {Path(p).stem for p in spec.products} | {spec.name}
    for spec in evaluations():
        if spec.generic and spec.name in taken:
            raise RegistryError(f"evaluation {spec.name!r} ({spec.origin}): its figure figures/{{study}}/{spec.name}.pdf "
                                f"would be another figure's; choose another name")
        if spec.generic and spec.per_seed:
            raise RegistryError(f"evaluation {spec.name!r} ({spec.origin}): a generic evaluation is scored one job "
                                f"per arm (all seeds): per_seed must be False")
    for spec in targets():
        if sum(read.startswith("target:") for read in spec.reads) > 1:
            raise RegistryError(f"target {spec.name!r} ({spec.origin}): it may read at most one other target, "
                                f"got {list(spec.reads)}")
    for spec in regularisers():
        unsupported = sorted(set(spec.study_settings) - {"rsm_metric"})
        if unsupported:
            raise RegistryError(f"regulariser {spec.name!r} ({spec.origin}): study_settings {unsupported}: only "
                                f"rsm_metric reaches a regulariser today (the training job's rsm_metric param)")
    for spec in dataset_sources():
        if spec.image_size is None and "image_size" not in spec.schema.get("properties", {}):
            raise RegistryError(f"dataset source {spec.name!r} ({spec.origin}): declare image_size, or an "
                                f"image_size key in its schema")


def add_declarations(schema: dict) -> dict:
    """Fill the schema's open places from the registries (in place; returned): the regulariser,
    target and architecture enums, each regulariser's own arm fields and its defaults, each
    architecture's options, each evaluation's section, and each recording and dataset source's keys."""
    _check_declarations()
    defs = schema["$defs"]
    arm = defs["arm"]
    props = arm["properties"]
    props["regulariser"]["enum"] = ["none", *regularisers().names()]
    props["target"]["enum"] = targets().names()
    for spec in regularisers():
        defaults = dict(spec.defaults)
        for name, sub in spec.fields.items():
            sub = dict(sub)
            if "default" in sub:  # this kind's default only
                defaults[name] = sub.pop("default")
            _add_property(props, name, sub, spec, "studies.<study>.arms.<arm>")
        unknown = sorted(set(defaults) - set(props))
        if unknown:
            raise RegistryError(f"regulariser {spec.name!r} ({spec.origin}): defaults for {unknown}, which no "
                                f"declaration makes an arm field")
        if defaults:
            arm.setdefault("allOf", []).append(
                {"if": {"properties": {"regulariser": {"const": spec.name}}},
                 "then": {"properties": {k: {"default": v} for k, v in defaults.items()}}})
    model = defs["study"]["properties"]["model"]["properties"]
    model["architecture"]["enum"] = architectures().names()
    for spec in architectures():
        for name, sub in spec.options.items():
            _add_property(model, name, sub, spec, "studies.<study>.model")
            _add_property(props["model"]["properties"], name, sub, spec, "studies.<study>.arms.<arm>.model")
    for spec in evaluations():
        defs["evaluations"]["properties"][spec.name] = spec.schema
    _source_branches(defs["recording"], recording_sources(), "recordings",
                     common={"v1_model": {"$ref": "#/$defs/v1_model", "default": {}}})
    _source_branches(defs["dataset"], dataset_sources(), "datasets")
    return schema


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check_layers(field: str, layers, architecture: str, model_cfg: dict | None = None) -> None:
    taps = taps_for(architecture, model_cfg)
    bad = [t for t in layers if t not in taps]
    if bad:
        raise ConfigError(f"config field '{field}': unknown layer(s) {bad}; the model's taps are {list(taps)}")


def arm_model(study: dict, arm_name: str) -> dict:
    """The model an arm trains: the study's ``model`` with the arm's ``model`` changes on top (a
    structure-level bias such as a VOneBlock front end is an arm like any regulariser)."""
    return {**study["model"], **study["arms"][arm_name].get("model", {})}


def sweep_arm_name(base: str, sweep: str, value: float) -> str:
    return f"{base}_{SWEEPS[sweep][2]}{value:g}"


def expand_sweeps(study: dict, where: str) -> None:
    """Add the arms a study's ``sweeps`` generate (in place; idempotent).

    ``label_noise``: every listed arm again at each fraction of corrupted labels, named
    ``<arm>_labelnoise<f>`` and marked ``sweep_of: <arm>`` (tables show it as <arm> at level f);
    ``r``: every listed (rsm) arm again at each weight r, named ``<arm>_r<value>``;
    ``batch_ratio``: every listed (mtl) arm again at each neural batch ratio, ``<arm>_ratio<value>``."""
    arms = study["arms"]
    for sweep, (key, values_key, _, needs) in SWEEPS.items():
        spec = study.get("sweeps", {}).get(sweep)
        if not spec:
            continue
        for base in spec["arms"]:
            if base not in arms:
                raise ConfigError(f"config field '{where}.sweeps.{sweep}.arms': {base!r} is not one of the "
                                  f"arms {sorted(arms)}")
            if needs and arms[base]["regulariser"] != needs:
                raise ConfigError(f"config field '{where}.sweeps.{sweep}.arms': {base!r} is not an {needs} arm")
            for value in spec[values_key]:
                name = sweep_arm_name(base, sweep, value)
                if name in arms and arms[name].get("sweep_of") != base:
                    raise ConfigError(f"config field '{where}.arms.{name}': clashes with an arm the "
                                      f"'{sweep}' sweep generates")
                arms[name] = {**{k: v for k, v in arms[base].items() if k != "sweep_of"}, key: value,
                              "sweep_of": base}


def _resolve(schema, root: dict):
    """A subschema with its local ``$ref`` ("#/$defs/...") replaced by the target, siblings kept."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _is_valid(instance, schema: dict, root: dict) -> bool:
    return jsonschema.Draft202012Validator({**schema, "$defs": root.get("$defs", {})}).is_valid(instance)


def fill_defaults(instance, schema: dict, root: dict | None = None) -> None:
    """Fill in, in place, every ``default`` the schema declares for a key the config leaves out.

    The schema is the one source of defaults: jobs read ``cfg[key]``, never ``cfg.get(key, value)``.
    Walks properties, additionalProperties and items, the branch of a oneOf/anyOf that the value
    matches, allOf, and if/then/else (per-regulariser defaults of an arm, say). A default object is
    filled in turn, so an absent section gets its nested defaults. Call it on a validated config."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            sub = _resolve(sub, root)
            if key not in instance and isinstance(sub, dict) and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                fill_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in properties:
                    fill_defaults(value, extra, root)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            fill_defaults(item, schema["items"], root)
    for sub in schema.get("allOf", []):
        fill_defaults(instance, sub, root)
    for key in ("oneOf", "anyOf"):
        match = next((sub for sub in schema.get(key, []) if _is_valid(instance, _resolve(sub, root), root)), None)
        if match is not None:
            fill_defaults(instance, match, root)
    if "if" in schema:
        branch = schema.get("then" if _is_valid(instance, _resolve(schema["if"], root), root) else "else")
        if branch is not None:
            fill_defaults(instance, branch, root)


_SCHEMA_CACHE: dict = {}


def _packaged_schema() -> dict:
    """The packaged schema with the declarations, rebuilt when a plugin adds one."""
    key = generation()
    if key not in _SCHEMA_CACHE:
        _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[key] = load_schema()
    return _SCHEMA_CACHE[key]


def _schema_node(path: tuple[str, ...]) -> dict:
    """The subschema at a path of a definition then properties, e.g. ("study", "training")."""
    schema = _packaged_schema()
    node = schema["$defs"][path[0]]
    for key in path[1:]:
        node = _resolve(node, schema)["properties"][key]
    return _resolve(node, schema)


def with_defaults(section: dict, *path: str) -> dict:
    """A copy of one config section with the schema's defaults filled in, the section named by a
    definition and properties below it (``"arm"``; ``"study", "training", "lr_schedule"``): for
    code called outside the workflow, on a section that did not come through
    :func:`validate_config`."""
    filled = copy.deepcopy(section)
    fill_defaults(filled, _schema_node(path), _packaged_schema())
    return filled


def schema_default(*path: str):
    """The schema's default at a path of a definition and properties, e.g.
    ``schema_default("study", "similarity", "rsm_metric")``."""
    return _schema_node(path)["default"]


# Mappings whose order means something (the order of figures' arms, of studies in `rule all`).
ORDERED_MAPPINGS = frozenset({"studies", "datasets", "recordings", "arms"})


def _canonical(value, ordered: bool = False):
    if isinstance(value, dict):
        keys = list(value) if ordered else sorted(value)
        return {k: _canonical(value[k], k in ORDERED_MAPPINGS) for k in keys}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def canonical_order(config: dict) -> None:
    """Sort the keys of every mapping but :data:`ORDERED_MAPPINGS`, in place: the config slices
    the rules pass as params then compare equal however a YAML file orders its keys, so moving a
    line reruns nothing."""
    ordered = _canonical(config)
    config.clear()
    config.update(ordered)


REPOSITORY = Path(__file__).resolve().parents[2]


def merged(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def resolve_extends(config: dict, base_dir: str | Path = REPOSITORY) -> None:
    """A config with ``extends: <file>`` (a path relative to ``base_dir``, the repository) is that
    file's config with this one's values on top (in place; chains are followed). The study presets
    extend studies/base.yaml, so each holds only what its paper changes."""
    seen = []
    while "extends" in config:
        path = Path(base_dir) / config.pop("extends")
        if path in seen:
            raise ConfigError(f"config field 'extends': {path} extends itself (via {seen})")
        seen.append(path)
        if not path.is_file():
            raise ConfigError(f"config field 'extends': no file {path}")
        with open(path) as f:
            base = yaml.safe_load(f) or {}
        combined = merged(base, config)
        config.clear()
        config.update(combined)


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Raise :class:`ConfigError` on the first problem; fill schema defaults; return the config.
    The plugins the config names are imported first (their declarations extend the schema)."""
    resolve_extends(config)
    from .plugins import load_plugins
    plugins = config.get("plugins") or []
    if not isinstance(plugins, list):
        raise ConfigError(f"config field 'plugins': expected a list of module or entry-point names, got {plugins!r}")
    load_plugins(plugins)
    schema = schema or _packaged_schema()  # built once per set of declarations
    _check_kind_names(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = jsonschema.exceptions.best_match(errors)
        # oneOf errors hide the real cause in their context; surface the deepest one.
        while e.context:
            e = jsonschema.exceptions.best_match(e.context)
        raise ConfigError(f"config field '{_field(e.absolute_path)}': {e.message}")
    fill_defaults(config, schema)
    canonical_order(config)
    for name, study in config["studies"].items():
        where = f"studies.{name}"
        for key, table in (("dataset", "datasets"), ("recording", "recordings")):
            if study[key] not in config[table]:
                raise ConfigError(f"config field '{where}.{key}': {study[key]!r} is not one of the "
                                  f"configured {table}: {sorted(config[table])}")
        baseline = study["baseline_arm"]
        if baseline not in study["arms"]:
            raise ConfigError(f"config field '{where}.baseline_arm': {baseline!r} is not one of the arms "
                              f"{sorted(study['arms'])}")
        unknown = [a for a in study["control_arms"] if a not in study["arms"]]
        if unknown:
            raise ConfigError(f"config field '{where}.control_arms': {unknown} are not arms {sorted(study['arms'])}")
        architecture = study["model"]["architecture"]
        options = architecture_options(architecture)
        bad = sorted(set(study["model"]) - {"architecture", "diagnostic_layers"} - options)
        if bad:
            raise ConfigError(f"config field '{where}.model.{bad[0]}': not an option of {architecture} "
                              f"(options: {sorted(options)})")
        _check_layers(f"{where}.model.diagnostic_layers", study["model"].get("diagnostic_layers", []), architecture,
                      study["model"])
        expand_sweeps(study, where)
        for arm_name, arm in study["arms"].items():
            model = arm_model(study, arm_name)
            bad = sorted(set(arm.get("model", {})) - options)
            if bad:
                raise ConfigError(f"config field '{where}.arms.{arm_name}.model.{bad[0]}': not an option of "
                                  f"{architecture} (options: {sorted(options)})")
            _check_model_builds(f"{where}.arms.{arm_name}.model", model, config["datasets"][study["dataset"]])
            # the held-out diagnostic reads these layers on every arm's own model
            _check_layers(f"{where}.model.diagnostic_layers", model.get("diagnostic_layers", []), architecture, model)
            if arm["regulariser"] == "none":
                continue
            _check_regulariser(arm, f"{where}.arms.{arm_name}", architecture, model)
        if "learning_curves" in study["evaluations"]:
            _check_learning_curves(study, where, config["datasets"][study["dataset"]])
        _check_safarani(study, where, config["datasets"][study["dataset"]])
        _check_pack_engine(study, where)
        studies = config.get("studies_to_run")
        if studies:
            unknown = [s for s in studies if s not in config["studies"]]
            if unknown:
                raise ConfigError(f"config field 'studies_to_run': unknown {unknown}; studies are {sorted(config['studies'])}")
    _check_brain_likeness(config)
    return config


def _check_kind_names(config: dict) -> None:
    """Every kind name the config uses is declared (built in or by a listed plugin): said with the
    field, the names known and where a plugin's come from, before the schema's generic message."""
    def entries(key):
        value = config.get(key)
        return value.items() if isinstance(value, dict) else ()
    try:
        for table, registry in (("datasets", dataset_sources()), ("recordings", recording_sources())):
            for name, entry in entries(table):
                if isinstance(entry, dict) and "source" in entry:
                    registry.require(entry["source"], f"{table}.{name}.source")
        for name, study in entries("studies"):
            if not isinstance(study, dict):
                continue
            model = study.get("model")
            if isinstance(model, dict) and "architecture" in model:
                architectures().require(model["architecture"], f"studies.{name}.model.architecture")
            for evaluation in study.get("evaluations") or {}:
                evaluations().require(evaluation, f"studies.{name}.evaluations.{evaluation}")
            for arm_name, arm in (study.get("arms") or {}).items():
                if not isinstance(arm, dict):
                    continue
                if "regulariser" in arm:
                    regularisers().require(arm["regulariser"], f"studies.{name}.arms.{arm_name}.regulariser")
                if "target" in arm:
                    targets().require(arm["target"], f"studies.{name}.arms.{arm_name}.target")
    except RegistryError as e:
        raise ConfigError(str(e)) from None


def _check_regulariser(arm: dict, where: str, architecture: str, model: dict) -> None:
    """An arm's regulariser against its declaration: the fields it needs, a target of a product it
    accepts (or none), and layers its network has."""
    kind = arm["regulariser"]
    spec = regularisers()[kind]
    for key in spec.required:
        if key not in arm:
            raise ConfigError(f"config field '{where}.{key}': required for the {kind!r} regulariser")
    if not spec.accepts and "target" in arm:
        raise ConfigError(f"config field '{where}.target': the {kind!r} regulariser takes no target")
    if spec.accepts and "target" in arm and targets()[arm["target"]].product not in spec.accepts:
        usable = [t.name for t in targets() if t.product in spec.accepts]
        raise ConfigError(f"config field '{where}.target': {arm['target']!r} is not a target of the {kind!r} "
                          f"regulariser; expected one of {usable}")
    field = spec.layers_field
    if field is not None and field in arm:
        _check_layers(f"{where}.{field}", arm[field] if field == "layers" else [arm[field]], architecture, model)


def _check_model_builds(field: str, model: dict, dataset: dict) -> None:
    """What the schema cannot see: an architecture's smallest input (VGG's five poolings need 32 px);
    a VOneBlock needs at least one Gabor channel."""
    size = model.get("input_size") or image_size_of(dataset)
    minimum = architectures()[model["architecture"]].min_input_size
    if size < minimum:
        raise ConfigError(f"config field '{field}': {model['architecture']} needs inputs of at least {minimum} px "
                          f"(its declared min_input_size); got {size} (set model.input_size: {minimum})")
    vone = model.get("vone")
    if isinstance(vone, dict) and vone.get("simple_channels", 16) + vone.get("complex_channels", 16) < 1:
        raise ConfigError(f"config field '{field}.vone': simple_channels + complex_channels must be at least 1")


def _check_safarani(study: dict, where: str, dataset: dict) -> None:
    """Safarani 2021's cross-field rules: the oracle splits a VGG at its layer; MTL-oracle targets
    need an oracle readout; the corruption analysis names arms that exist."""
    arms = study["arms"]
    spec = study["evaluations"].get("corruptions")
    size = image_size_of(dataset)
    for name, arm in arms.items():
        if arm["regulariser"] == "none" or not regularisers()[arm["regulariser"]].splits_core:
            continue
        model = arm_model(study, name)
        if not architectures()[model["architecture"]].splittable:
            splittable = sorted(spec.name for spec in architectures() if spec.splittable)
            raise ConfigError(f"config field '{where}.arms.{name}.regulariser': the {arm['regulariser']} regulariser "
                              f"freezes the core before its layer; the model is {model['architecture']!r} (use one of "
                              f"{splittable})")
        if vone_enabled(model.get("vone")):
            raise ConfigError(f"config field '{where}.arms.{name}.model.vone': the {arm['regulariser']} regulariser "
                              f"cannot split a network with a VOneBlock front end at a layer")
        if arm["regulariser"] != "oracle":
            continue
        fraction, batch = arm["oracle"]["clean_fraction"], study["training"]["batch_size"]
        if round(batch * fraction) >= batch:
            raise ConfigError(f"config field '{where}.arms.{name}.oracle.clean_fraction': {fraction} leaves no corrupted "
                              f"image in a batch of {batch}")
    if (spec is not None or any(a["regulariser"] == "oracle" for a in arms.values())) and size < 32:
        raise ConfigError(f"config field 'datasets.{study['dataset']}.image_size': the ImageNet-C corruptions "
                          f"(oracle arms, evaluations.corruptions) need images of at least 32 px, got {size}")
    readout = study["similarity"].get("oracle_readout")
    uses_oracle = any(a.get("target") == "responses_oracle" for a in arms.values())
    if uses_oracle and readout is None:
        raise ConfigError(f"config field '{where}.similarity.oracle_readout': required by the responses_oracle "
                          f"target (which oracle network the readout is fitted on)")
    if readout is not None:
        if readout["arm"] not in arms or arms[readout["arm"]]["regulariser"] != "oracle":
            raise ConfigError(f"config field '{where}.similarity.oracle_readout.arm': {readout['arm']!r} is not an "
                              f"oracle arm of this study (oracle arms: "
                              f"{sorted(n for n, a in arms.items() if a['regulariser'] == 'oracle')})")
        if "model_seed" in readout and readout["model_seed"] not in study["seeds"]:
            raise ConfigError(f"config field '{where}.similarity.oracle_readout.model_seed': "
                              f"{readout['model_seed']} is not one of the seeds {study['seeds']}")
        layer = readout.get("layer", arms[readout["arm"]]["layer"])
        _check_layers(f"{where}.similarity.oracle_readout.layer", [layer], study["model"]["architecture"],
                      arm_model(study, readout["arm"]))
    if spec is None:
        return
    bases = sorted(n for n, a in arms.items() if not a.get("sweep_of"))
    unknown = [a for a in spec.get("regression_pools", []) if a not in bases]
    if unknown:
        raise ConfigError(f"config field '{where}.evaluations.corruptions.regression_pools': {unknown} are not "
                          f"hand-written arms (a pool is an arm with its sweep copies) {bases}")
    if spec.get("example_severity") is not None and spec["example_severity"] not in spec["severities"]:
        raise ConfigError(f"config field '{where}.evaluations.corruptions.example_severity': "
                          f"{spec['example_severity']} is not one of the evaluated severities")
    example = spec.get("example_arm")
    if example is not None and example not in arms:
        raise ConfigError(f"config field '{where}.evaluations.corruptions.example_arm': {example!r} is not one "
                          f"of the arms {sorted(arms)}")


def _check_pack_engine(study: dict, where: str) -> None:
    """A stacked study's arms (its sweeps' included) must all be ones the stacked engine trains:
    said here, before any job, rather than by a pack job after the data is read."""
    if study["pack_engine"] != "stacked":
        return
    for name, arm in study["arms"].items():
        reason = unsupported_reason(arm, arm_model(study, name), study["training"])
        if reason:
            raise ConfigError(f"config field '{where}.pack_engine': stacked cannot train arm {name!r}: {reason}; "
                              f"use pack_engine: sequential for this study")


def example_arms(study: dict) -> tuple[str, str]:
    """(baseline arm, MTL arm) that Safarani's Fig. 2 compares: ``evaluations.corruptions.example_arm``,
    else the first hand-written mtl arm on the V1 model's responses, else any mtl arm, else the
    baseline itself."""
    arms, base = study["arms"], study["baseline_arm"]
    spec = study["evaluations"].get("corruptions", {})
    if spec.get("example_arm"):
        return base, spec["example_arm"]
    mtl = [n for n, a in arms.items() if a["regulariser"] == "mtl" and not a.get("sweep_of")]
    monkey = [n for n in mtl if arms[n]["target"] == "responses_model"]
    return base, (monkey or mtl or [base])[0]


def oracle_readout(study: dict) -> dict:
    """The study's oracle readout settings with defaults filled in (arm, model_seed, layer, ...)."""
    readout = dict(study["similarity"]["oracle_readout"])
    readout.setdefault("model_seed", study["seeds"][0])
    readout.setdefault("layer", study["arms"][readout["arm"]]["layer"])
    return readout


def _check_learning_curves(study: dict, where: str, dataset: dict) -> None:
    if not study["training"].get("track_test"):
        raise ConfigError(f"config field '{where}.training.track_test': must be true for the "
                          f"learning_curves evaluation (it reads per-epoch test metrics)")
    metrics = study["evaluations"]["learning_curves"].get("metrics") or []
    if metrics == ["within_superclass_error"] and dataset.get("source") != "cifar100":
        raise ConfigError(f"config field '{where}.evaluations.learning_curves.metrics': within_superclass_error "
                          f"needs a dataset with superclasses (cifar100), not {dataset.get('source')!r}")
    # every arm is tested against the baseline trained on the same labels
    base = study["baseline_arm"]
    levels = {float(a.get("label_noise", 0.0)) for a in study["arms"].values()}
    base_levels = {float(a.get("label_noise", 0.0)) for n, a in study["arms"].items()
                   if n == base or a.get("sweep_of") == base and "r" not in a}
    missing = sorted(levels - base_levels)
    if missing:
        raise ConfigError(f"config field '{where}.sweeps.label_noise.arms': the baseline arm {base!r} must be "
                          f"trained at every corrupted-label fraction other arms use; missing {missing}")


def _check_brain_likeness(config: dict) -> None:
    bl = config.get("brain_likeness")
    if bl is None:
        return
    for key, table in (("studies", "studies"), ("recordings", "recordings")):
        unknown = [n for n in bl.get(key, []) if n not in config[table]]
        if unknown:
            raise ConfigError(f"config field 'brain_likeness.{key}': {unknown} are not configured {table} "
                              f"{sorted(config[table])}")
    studies = bl.get("studies") or list(config["studies"])
    if not (bl.get("white_box") or bl.get("manipulations")
            or any("gaussian_noise" in config["studies"][st]["evaluations"] for st in studies)):
        raise ConfigError("config field 'brain_likeness': needs a robustness measure to correlate with: "
                          "white_box, manipulations, or a study with a gaussian_noise evaluation")
    for architecture, layers in bl.get("layers", {}).items():
        if architecture not in architectures():
            raise ConfigError(f"config field 'brain_likeness.layers.{architecture}': unknown architecture; "
                              f"known: {sorted(architectures().names())}")
        # "vone" is allowed: it exists on the models that have the front end
        _check_layers(f"brain_likeness.layers.{architecture}", layers, architecture, {"vone": True})


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; explicit values are checked.

    Inside a SLURM job that was given a GPU (CUDA_VISIBLE_DEVICES set), 'auto' does not fall back
    to the CPU: torch seeing no GPU there means a driver too old for its CUDA build, and a job would
    otherwise train for hours on the node's CPU with the GPU idle."""
    import torch
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
            raise ConfigError(
                "config field 'device': 'auto' in a SLURM job given a GPU (CUDA_VISIBLE_DEVICES="
                f"{os.environ['CUDA_VISIBLE_DEVICES']}), but torch {torch.__version__} sees no CUDA device: "
                "is the node's NVIDIA driver new enough for this torch's CUDA build? Set device: cpu to "
                "use the CPU")
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"config field 'device': {requested!r} requested but no CUDA device is visible")
        index = torch.device(requested).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"config field 'device': {requested!r} requested but only {torch.cuda.device_count()} "
                              "CUDA device(s) are visible (numbered from 0; a SLURM job given one GPU sees it as cuda:0)")
    return requested


def similarity_targets(study: dict) -> list[str]:
    """The S_neural kinds a study's arms need, always including 'model' (the diagnostic target)."""
    kinds = {"model"} | {arm["target"] for arm in study["arms"].values() if "target" in arm}
    for kind in list(kinds):  # e.g. an oracle readout is fitted to the V1 model's predictions
        kinds |= set(targets()[kind].implies)
    return sorted(kinds)
