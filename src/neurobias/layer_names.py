"""Tap (layer) names and allowed model options per architecture, without importing torch.

The Snakefile imports this module to validate ``model.diagnostic_layers``, arm ``layers`` and
model options before any job runs; :mod:`neurobias.models` builds the networks, and
``tests/test_models.py`` checks that every backbone's ``tap_names`` equal
:data:`ARCHITECTURE_TAPS`.

:data:`ARCHITECTURE_OPTIONS`: the keys a study's ``model`` section may hold besides
``architecture`` and ``diagnostic_layers``, i.e. the backbone constructor's options plus the
classifier's :data:`CLASSIFIER_OPTIONS` (``input_size``, ``vone``), which every architecture
accepts.
:data:`DEFAULT_DIAGNOSTIC_TAPS`: the taps the held-out similarity fit uses when a study names none.

The ``vone`` option (:mod:`neurobias.models.vone`, after Dapello et al. 2020) puts a fixed Gabor
front end in front of any backbone and adds one tap, :data:`VONE_TAP`, before the backbone's taps:
:func:`taps_for` gives a model configuration's taps. :data:`VONE_OPTIONS` are the keys the
option's mapping may hold (``vone: true`` or ``vone: {}`` means all defaults; null or false: off).
"""

from __future__ import annotations

_RESNET_TAPS = ("stem", "layer1", "layer2", "layer3", "layer4")

ARCHITECTURE_TAPS: dict[str, tuple[str, ...]] = {
    "resnet18": _RESNET_TAPS,
    "resnet34": _RESNET_TAPS,
    "cornet_z": ("V1", "V2", "V4", "IT"),
    # Network order; Federer et al. 2020's "third convolutional layer" is conv2_1.
    "vgg16": ("conv1_1", "conv1_2", "pool1",
              "conv2_1", "conv2_2", "pool2",
              "conv3_1", "conv3_2", "conv3_3", "pool3",
              "conv4_1", "conv4_2", "conv4_3", "pool4",
              "conv5_1", "conv5_2", "conv5_3", "pool5"),
    "vgg11": ("conv1_1", "pool1", "conv2_1", "pool2", "conv3_1", "conv3_2", "pool3",
              "conv4_1", "conv4_2", "pool4", "conv5_1", "conv5_2", "pool5"),
    # Safarani et al. 2021 share VGG-19 up to conv3_1 between classification and V1 prediction.
    "vgg19": ("conv1_1", "conv1_2", "pool1",
              "conv2_1", "conv2_2", "pool2",
              "conv3_1", "conv3_2", "conv3_3", "conv3_4", "pool3",
              "conv4_1", "conv4_2", "conv4_3", "conv4_4", "pool4",
              "conv5_1", "conv5_2", "conv5_3", "conv5_4", "pool5"),
}

# Options of Classifier itself (models.build_classifier), valid for every architecture.
CLASSIFIER_OPTIONS: frozenset[str] = frozenset({"input_size", "vone"})

# The VOneBlock front end's tap and the keys of the ``vone`` option (defaults in models.vone).
VONE_TAP = "vone"
VONE_OPTIONS: frozenset[str] = frozenset({
    "parameters", "noise", "simple_channels", "complex_channels", "kernel_size", "stride",
    "visual_degrees", "image_size", "seed", "bottleneck", "sf_corr", "sf_max", "k_exc",
    "noise_scale", "noise_level"})

ARCHITECTURE_OPTIONS: dict[str, set[str]] = {
    "resnet18": {"width"} | CLASSIFIER_OPTIONS,
    "resnet34": {"width"} | CLASSIFIER_OPTIONS,
    "cornet_z": {"width"} | CLASSIFIER_OPTIONS,
    "vgg16": {"width", "batch_norm", "head_init"} | CLASSIFIER_OPTIONS,
    "vgg11": {"width", "batch_norm", "head_init"} | CLASSIFIER_OPTIONS,
    "vgg19": {"width", "batch_norm", "head_init"} | CLASSIFIER_OPTIONS,
}

# Taps the held-out similarity fit is scored on when neither the arm nor model.diagnostic_layers
# names any: the previous default for ResNets, and the layer Federer et al. 2020 regularise for
# CORnet-Z (V1) and VGG-16 ("the third convolutional layer", conv2_1).
DEFAULT_DIAGNOSTIC_TAPS: dict[str, tuple[str, ...]] = {
    "resnet18": ("layer1", "layer2"),
    "resnet34": ("layer1", "layer2"),
    "cornet_z": ("V1",),
    "vgg16": ("conv2_1",),
    "vgg11": ("conv3_1",),
    "vgg19": ("conv3_1",),  # the end of Safarani et al.'s shared core
}


def vone_enabled(value) -> bool:
    """Whether a ``vone`` option value turns the front end on: a mapping (``{}``: all defaults) or
    true; null / false / absent leave the plain backbone."""
    return value is not None and value is not False


def taps_for(architecture: str, model_cfg: dict | None = None) -> tuple[str, ...]:
    """The taps of a configured model: the architecture's, preceded by ``"vone"`` when the model
    configuration (a study's ``model`` section) turns the ``vone`` option on."""
    if architecture not in ARCHITECTURE_TAPS:
        raise ValueError(f"model.architecture: unknown {architecture!r}; known: {sorted(ARCHITECTURE_TAPS)}")
    taps = ARCHITECTURE_TAPS[architecture]
    if model_cfg and vone_enabled(model_cfg.get("vone")):
        return (VONE_TAP, *taps)
    return taps

# Candidate layers for V1 explained variance (Dapello et al. 2020 report each model's best early-
# to-middle layer); override per architecture with brain_likeness.layers.
DEFAULT_EV_LAYERS: dict[str, tuple[str, ...]] = {
    "resnet18": ("stem", "layer1", "layer2"),
    "resnet34": ("stem", "layer1", "layer2"),
    "cornet_z": ("V1", "V2", "V4"),
    "vgg16": ("conv1_2", "conv2_1", "conv2_2", "conv3_1"),
    "vgg11": ("conv1_1", "conv2_1", "conv3_1"),
    "vgg19": ("conv1_2", "conv2_1", "conv2_2", "conv3_1"),
}
