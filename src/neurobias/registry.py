"""One registry per kind: regularisers, neural targets, architectures, evaluations, recording
sources and dataset sources. Each entry is declared once, next to its code, as a small spec.

Specs are plain data (no torch, numpy or pandas): the Snakefile reads them while it builds the job
graph, and :func:`neurobias.config.load_schema` builds the config schema from them. The code
behind an entry is named by ``builder`` (``"package.module:attribute"``) and imported only when a
job calls :meth:`Spec.load`. So adding a kind is one declaration, and nothing else in the package
keeps a list of kind names: the schema's enums, config validation, the rule graph
(:func:`neurobias.rule_params`) and the training loop read the registries.

Built-in entries are declared by the package that holds their code (brain-score's plugin folders,
timm's ``register_model``): ``neurobias.regularisers``, ``neurobias.neural`` (targets and recording
sources), ``neurobias.models``, ``neurobias.robustness`` (evaluations) and ``neurobias.data``
(dataset sources), each of which imports only this module at the top. A user's plugin module
declares its entries the same way, with :func:`register`, and is loaded by
:func:`neurobias.plugins.load_plugins` when the config's ``plugins`` names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

_BUILDER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RegistryError(ValueError):
    """A spec is malformed, collides with another, or a name is unknown; the message names the
    plugin (where one declared it) and the config key."""


@dataclass(frozen=True)
class Spec:
    """What every entry has. ``builder``: ``"module:attribute"`` of the code, imported on first use;
    ``doc``: one line for the docs and error messages; ``plugin``: the plugin module that declared
    it (None for built-ins; set by :func:`register`)."""

    name: str
    builder: str
    doc: str = ""
    plugin: str | None = None

    kind: ClassVar[str] = "entry"

    def load(self):
        """The builder (imported now)."""
        module, attribute = self.builder.split(":")
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj

    @property
    def origin(self) -> str:
        return "built in" if self.plugin is None else f"from plugin {self.plugin!r}"


@dataclass(frozen=True)
class RegulariserSpec(Spec):
    """A regulariser kind (``studies.<study>.arms.<arm>.regulariser``).

    builder: ``(arm, target, train_rows, context) -> Regulariser``.
    fields: arm fields this kind owns, name -> JSON schema (a ``default`` there is filled in for
    arms of this kind only); defaults: kind-specific defaults of shared arm fields
    (``stimulus_batch_size``, ``neural_batchnorm``); required: arm fields it needs (its own or the
    shared ``target``, ``layer``, ``layers``); accepts: the target products it can use
    (:attr:`TargetSpec.product`; empty: it takes no target); layers_field: the arm field naming the
    layers it reads (``layer`` or ``layers``); neural_pass: it runs stimulus batches through the
    network (the arm's ``neural_batchnorm`` applies); stackable: the stacked engine may train it
    (:mod:`neurobias.stacked`; only once a test shows that a stacked step is each run's own);
    study_settings: keys of the study's ``similarity`` section it reads (given in ``context``);
    needs_tap_channels: ``context["tap_channels"]`` gets the channels of its layers;
    needs_responses: ``context["responses"]`` gets the trial-averaged recorded responses;
    splits_core: it freezes the network's core before its layer (architecture must be
    ``splittable``); penalty_term: what the training log calls its term."""

    fields: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    required: tuple = ()
    accepts: tuple = ()
    layers_field: str | None = None
    neural_pass: bool = False
    stackable: bool = False
    study_settings: tuple = ()
    needs_tap_channels: bool = False
    needs_responses: bool = False
    splits_core: bool = False
    penalty_term: str = "regulariser term"

    kind: ClassVar[str] = "regulariser"


@dataclass(frozen=True)
class TargetSpec(Spec):
    """A neural target kind (``arms.<arm>.target``), one file ``results/similarity/{study}/{name}.npy``.

    builder: ``(recording, options, inputs, device) -> np.ndarray`` where ``inputs`` maps each of
    ``reads`` to its path. product: what the array is, and so which regularisers accept it
    (``similarity``: an image x image similarity matrix [M, M]; ``rsm``: a teacher RSM [M, M];
    ``responses``: per-image responses [M, K]); options: keys of the study's ``similarity``
    settings it is built from; reads: other inputs, ``"v1_model"`` (the fitted V1 model),
    ``"vgg_weights"`` (ImageNet VGG-19, when ``similarity.vgg_weights`` is imagenet) or
    ``"target:<name>"`` (another target's file); on_device: it runs a network (a GPU job on a
    cluster); from_trained_model: it is read from a network the study trains (its own rule, and a
    run using it cannot share a job with that network's); implies: targets that must exist with it;
    diagnosed: the similarity diagnostics compare it (a matrix over images)."""

    product: str = "similarity"
    options: tuple = ()
    reads: tuple = ()
    on_device: bool = False
    from_trained_model: bool = False
    implies: tuple = ()
    diagnosed: bool = True

    kind: ClassVar[str] = "target"


@dataclass(frozen=True)
class ArchitectureSpec(Spec):
    """A network (``studies.<study>.model.architecture``).

    builder: ``(num_classes, in_channels, **options) -> nn.Module`` with
    ``forward_taps(x, taps, features_only=False) -> (logits, {tap: activation})`` and ``tap_names``. taps: its tap (layer) names in network order; options: its constructor's
    options, name -> JSON schema; diagnostic_taps: the taps the held-out similarity fit uses when a
    study names none; ev_layers: candidate layers for V1 explained variance; splittable: it can be
    frozen up to a layer (the oracle); min_input_size: the smallest input side it takes."""

    taps: tuple = ()
    options: dict = field(default_factory=dict)
    diagnostic_taps: tuple = ()
    ev_layers: tuple = ()
    splittable: bool = False
    min_input_size: int = 1

    kind: ClassVar[str] = "architecture"


@dataclass(frozen=True)
class EvaluationSpec(Spec):
    """A robustness evaluation (a key of ``studies.<study>.evaluations``) with the statistics and
    figures that read it.

    schema: JSON schema of its config section. products: what ``rule all`` builds for a study
    that runs it (paths with ``{study}``). generic: the workflow's generic rules run it: one job
    per arm (``evaluate``: the builder ``(models, images, labels, cfg, device, progress) -> one
    list per model of {condition, level, metric, value} records``), then ``stats`` and the
    ``figure_evaluation`` rule (metric against level per arm); built-in evaluations with rules of
    their own say False. metrics: what "better" means for each metric it writes
    (``higher``/``lower``), for the one-tailed tests. per_seed: one table per (arm, seed) rather
    than per arm (an attack that takes minutes per model); tables: it writes tidy tables
    ``results/eval/{study}/{name}/...`` that the ``stats`` rule tests (False: it reads the training
    histories itself, as Federer's learning curves do)."""

    schema: dict = field(default_factory=dict)
    products: tuple = ()
    generic: bool = False
    metrics: dict = field(default_factory=dict)
    per_seed: bool = False
    tables: bool = True

    kind: ClassVar[str] = "evaluation"

    def study_products(self, study: str) -> list[str]:
        """What ``rule all`` builds for a study that runs this evaluation: its ``products``, or for a
        generic evaluation without any its statistics and its figure."""
        products = self.products or ((f"results/stats/{{study}}/{self.name}_tests.csv",
                                      f"figures/{{study}}/{self.name}.pdf", f"figures/{{study}}/{self.name}.png")
                                     if self.generic else ())
        return [p.format(study=study) for p in products]


@dataclass(frozen=True)
class SourceSpec(Spec):
    """A recording source (``recordings.<name>.source``) or dataset source
    (``datasets.<name>.source``).

    builder: recordings ``(params, archive, config_key) -> Recording``; datasets ``(params) ->
    (splits, classes)`` (see :mod:`neurobias.data`). schema: JSON schema of the config entry's
    other keys (``properties``/``required``; ``source`` is added); download: the key of
    :data:`neurobias.sources.SOURCES` whose archive the ``download`` rule fetches first (None:
    nothing to download); local_file: the entry's key that names a file of the user's (e.g.
    ``path``), which the building job reads as its input (a changed file reruns it); image_size:
    the prepared images' side (datasets; None: the entry's own ``image_size``)."""

    schema: dict = field(default_factory=dict)
    download: str | None = None
    local_file: str | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class RecordingSourceSpec(SourceSpec):
    kind: ClassVar[str] = "recording source"


@dataclass(frozen=True)
class DatasetSourceSpec(SourceSpec):
    kind: ClassVar[str] = "dataset source"


class Registry:
    """Specs of one kind by name, in the order they were declared. ``config_key`` says where the
    config names them (for error messages); ``reserved``: names that mean something without an
    entry (``none`` for regularisers)."""

    def __init__(self, spec_type: type, config_key: str, reserved: tuple = ()):
        self.spec_type = spec_type
        self.config_key = config_key
        self.reserved = reserved
        self._specs: dict[str, Spec] = {}

    @property
    def kind(self) -> str:
        return self.spec_type.kind

    def add(self, spec: Spec) -> Spec:
        where = "" if spec.plugin is None else f"plugin {spec.plugin!r}: "
        if not _NAME.match(spec.name or ""):
            raise RegistryError(f"{where}{self.kind} name {spec.name!r}: lower-case letters, digits and _ "
                                f"(it becomes a config value and a file name)")
        if not _BUILDER.match(spec.builder or ""):
            raise RegistryError(f"{where}{self.kind} {spec.name!r}: builder must be 'package.module:attribute', "
                                f"got {spec.builder!r}")
        if spec.name in self.reserved or spec.name in self._specs:
            other = "a reserved name" if spec.name in self.reserved else self._specs[spec.name].origin
            raise RegistryError(f"{where}{self.kind} {spec.name!r} is already declared ({other}); "
                                f"choose another name for {self.config_key}")
        self._specs[spec.name] = spec
        bump()
        return spec

    def __getitem__(self, name: str) -> Spec:
        return self.require(name, self.config_key)

    def require(self, name: str, field: str) -> Spec | None:
        """The spec of ``name`` (None for a reserved name), or an error naming the config ``field``,
        the names known and where a plugin's come from."""
        if name in self.reserved:
            return None
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise RegistryError(f"config field '{field}': unknown {self.kind} {name!r}; known: "
                                f"{', '.join([*self.reserved, *self._specs])} (a plugin's entries are known once "
                                f"the config's 'plugins' names it)") from None

    def __contains__(self, name) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[Spec]:
        return iter(list(self._specs.values()))

    def names(self) -> list[str]:
        return list(self._specs)

    def remove_plugin(self, plugin: str) -> None:
        """Forget the entries a plugin declared (tests; a plugin loaded twice in one process)."""
        self._specs = {n: s for n, s in self._specs.items() if s.plugin != plugin}
        bump()


REGULARISERS = Registry(RegulariserSpec, "studies.<study>.arms.<arm>.regulariser", reserved=("none",))
TARGETS = Registry(TargetSpec, "studies.<study>.arms.<arm>.target")
ARCHITECTURES = Registry(ArchitectureSpec, "studies.<study>.model.architecture")
EVALUATIONS = Registry(EvaluationSpec, "studies.<study>.evaluations")
RECORDING_SOURCES = Registry(RecordingSourceSpec, "recordings.<name>.source")
DATASET_SOURCES = Registry(DatasetSourceSpec, "datasets.<name>.source")

ALL_REGISTRIES = (REGULARISERS, TARGETS, ARCHITECTURES, EVALUATIONS, RECORDING_SOURCES, DATASET_SOURCES)
_BY_TYPE = {r.spec_type: r for r in ALL_REGISTRIES}

# Packages that declare the built-in entries (each imports only this module at its top).
_BUILTIN_PACKAGES = ("neurobias.regularisers", "neurobias.neural", "neurobias.models", "neurobias.robustness",
                     "neurobias.data")

_generation = 0
_declaring: list[str | None] = [None]  # the plugin whose module is being imported (None: built in)


def bump() -> None:
    global _generation
    _generation += 1


def generation() -> int:
    """Changes whenever an entry is added or removed (the schema cache's key)."""
    return _generation


@contextlib.contextmanager
def declaring(plugin: str | None):
    """Entries registered inside this block are the named plugin's."""
    _declaring.append(plugin)
    try:
        yield
    finally:
        _declaring.pop()


def register(spec: Spec) -> Spec:
    """Declare one entry (a built-in package's or a plugin's); the registry is chosen by the spec's
    type. Returns the spec as stored (with ``plugin`` set)."""
    registry = _BY_TYPE.get(type(spec))
    if registry is None:
        raise RegistryError(f"register: expected one of {[t.__name__ for t in _BY_TYPE]}, got {type(spec).__name__}")
    plugin = _declaring[-1]
    if plugin is not None:
        spec = dataclasses.replace(spec, plugin=plugin)
    return registry.add(spec)


def declare(spec_type: type, **fields: Any) -> Spec:
    """``register(spec_type(**fields))``, with a missing or unknown field said as a
    :class:`RegistryError` naming the plugin, not a bare TypeError."""
    try:
        spec = spec_type(**fields)
    except TypeError as e:
        plugin = _declaring[-1]
        where = "" if plugin is None else f"plugin {plugin!r}: "
        raise RegistryError(f"{where}{spec_type.kind} {fields.get('name')!r}: {e}") from None
    return register(spec)


_loaded = False


def load_builtins() -> None:
    """Import the packages that declare the built-in entries (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in _BUILTIN_PACKAGES:
        importlib.import_module(package)


def regularisers() -> Registry:
    load_builtins()
    return REGULARISERS


def targets() -> Registry:
    load_builtins()
    return TARGETS


def architectures() -> Registry:
    load_builtins()
    return ARCHITECTURES


def evaluations() -> Registry:
    load_builtins()
    return EVALUATIONS


def recording_sources() -> Registry:
    load_builtins()
    return RECORDING_SOURCES


def dataset_sources() -> Registry:
    load_builtins()
    return DATASET_SOURCES


__all__ = ["ALL_REGISTRIES", "ARCHITECTURES", "ArchitectureSpec", "DATASET_SOURCES", "DatasetSourceSpec", "EVALUATIONS",
           "EvaluationSpec", "RECORDING_SOURCES", "REGULARISERS", "RecordingSourceSpec",
           "Registry", "RegistryError", "RegulariserSpec", "Spec", "TARGETS", "TargetSpec", "architectures",
           "dataset_sources", "declare", "declaring", "evaluations", "generation", "load_builtins",
           "recording_sources", "register", "regularisers", "targets"]


def describe() -> str:
    """Every declared entry, kind by kind, with where it comes from and its one-line doc."""
    lines = []
    for registry in ALL_REGISTRIES:
        lines.append(f"{registry.kind}s ({registry.config_key}):")
        lines += [f"  {spec.name:<22} {spec.origin:<28} {spec.doc}" for spec in registry]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m neurobias.registry [plugin ...]
    import sys

    from neurobias import registry  # this file runs as __main__: the entries live in the package's module
    from neurobias.plugins import load_plugins
    load_plugins(sys.argv[1:], config_key="command line")
    print(registry.describe())
