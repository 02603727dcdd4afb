"""Backbones with named feature taps, each declared below (:mod:`neurobias.registry`).

Every model is wrapped in :class:`~.classifier.Classifier` (:mod:`.classifier`: images in [0, 1],
optional resizing, normalisation, ``forward_taps(x, taps) -> (logits, {tap: activation})``, the
``input_size`` and ``vone`` options every architecture takes).

Architectures (``model.architecture``):

- ``resnet18``, ``resnet34``: ResNet with the CIFAR stem (:mod:`.resnet`), option ``width``.
- ``cornet_z``: CORnet-Z, Kubilius et al. 2018 (:mod:`.cornet`), option ``width``.
- ``vgg16``: VGG-16 configuration D with a small-input head (:mod:`.vgg`), options ``width``,
  ``batch_norm``, ``head_init``.
- ``vgg11``: VGG-11 configuration A (batch norm on by default), a CPU-sized VGG-19 stand-in.
- ``vgg19``: VGG-19 configuration E, the same head and options (batch norm on by default; Safarani
  et al. 2021).

Each declaration gives the constructor ``(num_classes, in_channels, **options) -> nn.Module`` (an
object with ``forward_taps`` and ``tap_names``), its tap names in network order (tests/test_models.py
checks them against the built network), its options' schema, and the layers the diagnostics and
brain-likeness use by default. A plugin declares a network the same way (docs/extending.md). This
module imports no torch until a name of :mod:`.classifier` is asked for.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..registry import ArchitectureSpec, declare

_WIDTH = {"width": {"$ref": "#/$defs/positive_int", "description": "channels of the first stage (64: the standard network)"}}
_VGG_OPTIONS = {
    **_WIDTH,
    "batch_norm": {"type": "boolean", "description": "VGG only: BatchNorm after every convolution (default: off for "
                   "vgg16, on for vgg11 and vgg19)"},
    "head_init": {"enum": ["torchvision", "width_scaled"],
                  "description": "VGG only: the classifier's linear layers N(0, 0.01) (torchvision) or "
                                 "N(0, 0.01 sqrt(4096 / fan_in)) (width_scaled: the per-layer gain of torchvision's "
                                 "4096-wide head)"},
}
_RESNET_TAPS = ("stem", "layer1", "layer2", "layer3", "layer4")

for _name in ("resnet18", "resnet34"):
    declare(ArchitectureSpec, name=_name, builder=f"neurobias.models.resnet:{_name}", taps=_RESNET_TAPS,
            options=_WIDTH, diagnostic_taps=("layer1", "layer2"), ev_layers=("stem", "layer1", "layer2"),
            doc=f"{_name[:6].capitalize()}-{_name[6:]} with the CIFAR stem (He et al. 2016, section 4.2)")

declare(ArchitectureSpec, name="cornet_z", builder="neurobias.models.cornet:build", taps=("V1", "V2", "V4", "IT"),
        options=_WIDTH, diagnostic_taps=("V1",), ev_layers=("V1", "V2", "V4"), splittable=True,
        doc="CORnet-Z (Kubilius et al. 2018); Federer et al. 2020 regularise V1")

# Network order; Federer et al. 2020's "third convolutional layer" is conv2_1 (their default tap).
declare(ArchitectureSpec, name="vgg16", builder="neurobias.models.vgg:build_vgg16",
        taps=("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3", "pool3",
              "conv4_1", "conv4_2", "conv4_3", "pool4", "conv5_1", "conv5_2", "conv5_3", "pool5"),
        options=_VGG_OPTIONS, diagnostic_taps=("conv2_1",), ev_layers=("conv1_2", "conv2_1", "conv2_2", "conv3_1"),
        splittable=True, min_input_size=32, doc="VGG-16 configuration D with a small-input head")
declare(ArchitectureSpec, name="vgg11", builder="neurobias.models.vgg:build_vgg11",
        taps=("conv1_1", "pool1", "conv2_1", "pool2", "conv3_1", "conv3_2", "pool3",
              "conv4_1", "conv4_2", "pool4", "conv5_1", "conv5_2", "pool5"),
        options=_VGG_OPTIONS, diagnostic_taps=("conv3_1",), ev_layers=("conv1_1", "conv2_1", "conv3_1"),
        splittable=True, min_input_size=32, doc="VGG-11 configuration A: a CPU-sized VGG-19 stand-in")
# Safarani et al. 2021 share VGG-19 up to conv3_1 between classification and V1 prediction.
declare(ArchitectureSpec, name="vgg19", builder="neurobias.models.vgg:build_vgg19",
        taps=("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
              "conv3_1", "conv3_2", "conv3_3", "conv3_4", "pool3",
              "conv4_1", "conv4_2", "conv4_3", "conv4_4", "pool4",
              "conv5_1", "conv5_2", "conv5_3", "conv5_4", "pool5"),
        options=_VGG_OPTIONS, diagnostic_taps=("conv3_1",), ev_layers=("conv1_2", "conv2_1", "conv2_2", "conv3_1"),
        splittable=True, min_input_size=32, doc="VGG-19 configuration E (Safarani et al. 2021)")

# torch-backed names of .classifier, imported on first use (PEP 562)
_CLASSIFIER_NAMES = ("Classifier", "build_classifier", "inference_layout", "MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS",
                     "strided_1x1_convolutions_too_narrow", "channels_last_is_safe", "CPU_EVAL_BATCH_SIZE",
                     "to_inference_layout", "VOneBlock", "VOneFront")


_classifier_attribute = lazy_attributes(__name__, {name: ".classifier" for name in _CLASSIFIER_NAMES})


def __getattr__(name: str):
    if name == "ARCHITECTURES":  # {name: constructor}, every declared architecture's (built-in and plugins')
        from ..registry import architectures
        return {spec.name: spec.load() for spec in architectures()}
    return _classifier_attribute(name)


__all__ = list(_CLASSIFIER_NAMES)
