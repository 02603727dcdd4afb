"""Tap (layer) names and allowed model options of a configured model, without importing torch.

The architectures declare their taps and options (:mod:`neurobias.models`, or a plugin); this
module answers what a configuration's model has. The Snakefile uses it to validate
``model.diagnostic_layers``, arm ``layers`` and model options before any job runs, and
``tests/test_models.py`` checks that every backbone's ``tap_names`` equal the declared taps.

:func:`architecture_options`: the keys a study's ``model`` section may hold besides
``architecture`` and ``diagnostic_layers``, i.e. the backbone constructor's options plus the
classifier's :data:`CLASSIFIER_OPTIONS` (``input_size``, ``vone``), which every architecture
accepts. :func:`default_diagnostic_taps`: the taps the held-out similarity fit uses when a study
names none. The tables ``ARCHITECTURE_TAPS``, ``ARCHITECTURE_OPTIONS``, ``DEFAULT_DIAGNOSTIC_TAPS``
and ``DEFAULT_EV_LAYERS`` are read from the declarations whenever they are asked for.

The ``vone`` option (:mod:`neurobias.models.vone`, after Dapello et al. 2020) puts a fixed Gabor
front end in front of any backbone and adds one tap, :data:`VONE_TAP`, before the backbone's taps:
:func:`taps_for` gives a model configuration's taps. :data:`VONE_OPTIONS` are the keys the
option's mapping may hold (``vone: true`` or ``vone: {}`` means all defaults; null or false: off).
"""

from __future__ import annotations

from .registry import architectures

# Options of Classifier itself (models.build_classifier), valid for every architecture.
CLASSIFIER_OPTIONS: frozenset[str] = frozenset({"input_size", "vone"})

# The VOneBlock front end's tap and the keys of the ``vone`` option (defaults in models.vone).
VONE_TAP = "vone"
VONE_OPTIONS: frozenset[str] = frozenset({
    "parameters", "noise", "simple_channels", "complex_channels", "kernel_size", "stride",
    "visual_degrees", "image_size", "seed", "bottleneck", "sf_corr", "sf_max", "k_exc",
    "noise_scale", "noise_level", "quadrature_channels"})


def architecture_options(architecture: str) -> set[str]:
    """The keys a study's ``model`` section may hold for an architecture besides ``architecture``
    and ``diagnostic_layers``: its declared options and the classifier's."""
    return set(architectures()[architecture].options) | CLASSIFIER_OPTIONS


def default_ev_layers(architecture: str) -> tuple[str, ...]:
    """Candidate layers for V1 explained variance (Dapello et al. 2020 report each model's best
    early-to-middle layer), as the architecture declares them; ``brain_likeness.layers`` overrides."""
    return tuple(architectures()[architecture].ev_layers)


def default_diagnostic_taps(architecture: str) -> tuple[str, ...]:
    """The taps the held-out similarity fit uses when neither the arm nor the study names any."""
    return tuple(architectures()[architecture].diagnostic_taps)


def __getattr__(name: str):
    """The per-architecture tables, read from the declarations (built-in and plugins') each time:
    ARCHITECTURE_TAPS, ARCHITECTURE_OPTIONS, DEFAULT_DIAGNOSTIC_TAPS, DEFAULT_EV_LAYERS."""
    tables = {"ARCHITECTURE_TAPS": lambda spec: tuple(spec.taps),
              "ARCHITECTURE_OPTIONS": lambda spec: architecture_options(spec.name),
              "DEFAULT_DIAGNOSTIC_TAPS": lambda spec: tuple(spec.diagnostic_taps),
              "DEFAULT_EV_LAYERS": lambda spec: tuple(spec.ev_layers)}
    if name not in tables:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return {spec.name: tables[name](spec) for spec in architectures()}


def vone_enabled(value) -> bool:
    """Whether a ``vone`` option value turns the front end on: a mapping (``{}``: all defaults) or
    true; null / false / absent leave the plain backbone."""
    return value is not None and value is not False


def taps_for(architecture: str, model_cfg: dict | None = None) -> tuple[str, ...]:
    """The taps of a configured model: the architecture's, preceded by ``"vone"`` when the model
    configuration (a study's ``model`` section) turns the ``vone`` option on."""
    taps = tuple(architectures()[architecture].taps)
    if model_cfg and vone_enabled(model_cfg.get("vone")):
        return (VONE_TAP, *taps)
    return taps
