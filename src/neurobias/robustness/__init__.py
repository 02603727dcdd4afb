"""Robustness evaluations, each declared below (:mod:`neurobias.registry`) with the schema of its
``studies.<study>.evaluations.<name>`` section and the statistics and figures that read it.

The built-in evaluations have rules of their own (workflow/rules/evaluate.smk, stats.smk,
figures.smk); a plugin's evaluation is ``generic``: the workflow's generic rules score every arm's
models with its builder, test each arm against the baseline and draw metric against level
(docs/extending.md).

The names here are resolved lazily (PEP 562): importing a submodule such as
:mod:`neurobias.robustness.label_noise` (which :mod:`neurobias.train` does) must not import
foolbox/eagerpy, which only :mod:`.adversarial` and :mod:`.pgd` need; and declaring the
evaluations imports no torch.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..registry import EvaluationSpec, declare

__all__ = ["gaussian_noise_accuracy", "minimal_perturbations"]

_FIGURE = "figures/{{study}}/{name}.{ext}"


def _figures(*names: str) -> tuple[str, ...]:
    return tuple(_FIGURE.format(name=n, ext=ext) for n in names for ext in ("pdf", "png"))


declare(EvaluationSpec, name="gaussian_noise", builder="neurobias.jobs:evaluate_gaussian_noise",
        doc="Li 2019 Fig. 4: accuracy under additive Gaussian pixel noise",
        products=(*_figures("noise_robustness"), "results/stats/{study}/gaussian_noise_tests.csv"),
        schema={"type": "object", "additionalProperties": False, "required": ["levels"], "properties": {
            "levels": {"type": "array", "minItems": 1, "items": {"type": "number", "minimum": 0, "maximum": 2}},
            "seed": {"$ref": "#/$defs/seed", "default": 0},
            "n_images": {"$ref": "#/$defs/positive_int", "description": "the first n test images (default: all)"}}})

declare(EvaluationSpec, name="learning_curves", builder="neurobias.jobs:stats_learning_curves", tables=False,
        doc="Federer 2020 Fig. 6/7: test accuracy and generalisation error per epoch, from the training histories",
        products=(*_figures("federer_fig6", "federer_fig7"), "results/stats/{study}/learning_curves_tests.csv"),
        schema={"type": "object", "additionalProperties": False,
                "description": "Federer 2020: test accuracy, generalisation error and within-superclass errors per epoch "
                               "from history.csv (needs training.track_test)",
                "properties": {"metrics": {"type": "array", "minItems": 1, "items": {
                    "enum": ["test_accuracy", "generalisation_error", "within_superclass_error"]}}}})

declare(EvaluationSpec, name="corruptions", builder="neurobias.jobs:evaluate_corruptions",
        doc="Safarani 2021: accuracy under ImageNet-C corruptions x severities (TIN-TC), robustness scores, Fig. 2 and 3",
        products=(*_figures("safarani_fig2", "safarani_fig3a", "safarani_fig3b", "safarani_fig3c"),
                  "results/stats/{study}/robustness_regression.csv"),
        schema={"type": "object", "additionalProperties": False,
                "description": "Safarani 2021: accuracy under ImageNet-C corruptions x severities (TIN-TC), robustness "
                               "scores, bootstrap, 2-factor OLS, Fig. 2 and 3",
                "properties": {
                    "corruptions": {"type": "array", "minItems": 1, "uniqueItems": True,
                                    "items": {"$ref": "#/$defs/corruption"},
                                    "description": "default: the 14 of TIN-TC (no glass blur)",
                                    "default": ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                                                "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness",
                                                "contrast", "elastic_transform", "pixelate", "jpeg_compression"]},
                    "severities": {"type": "array", "minItems": 1, "uniqueItems": True,
                                   "items": {"type": "integer", "minimum": 1, "maximum": 5}, "default": [1, 2, 3, 4, 5]},
                    "n_images": {"$ref": "#/$defs/positive_int", "description": "the first n test images (default: all)"},
                    "seed": {"$ref": "#/$defs/seed", "default": 0,
                             "description": "the corrupted images (the same for every model)"},
                    "batch_size": {"$ref": "#/$defs/positive_int", "default": 500},
                    "bootstrap": {"type": "object", "additionalProperties": False, "default": {}, "properties": {
                        "repetitions": {"$ref": "#/$defs/positive_int", "default": 250},
                        "seed": {"$ref": "#/$defs/seed", "default": 0}}},
                    "regression_pools": {"type": "array", "items": {"type": "string"},
                                         "description": "base arms whose batch-ratio sweep is regressed (robustness ~ "
                                                        "neural prediction + clean accuracy); default: every swept mtl arm"},
                    "example_severity": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3,
                                         "description": "Fig. 2's severity"},
                    "example_arm": {"type": "string", "description": "Fig. 2's and the ranking's MTL arm (default: the "
                                                                     "first mtl arm on responses_model)"}}})

declare(EvaluationSpec, name="adversarial", builder="neurobias.jobs:evaluate_adversarial", per_seed=True,
        doc="Li 2019 section 4.2: minimal adversarial perturbations (Foolbox FMN), median size per model",
        products=(*_figures("adversarial"), "results/stats/{study}/adversarial_tests.csv"),
        schema={"type": "object", "additionalProperties": False, "required": ["n_images"],
                "description": "Li 2019 section 4.2: minimal adversarial perturbations (Foolbox), median size per model",
                "properties": {
                    "n_images": {"$ref": "#/$defs/positive_int"},
                    "norms": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["l2", "linf"]},
                              "default": ["l2", "linf"]},
                    "steps": {"$ref": "#/$defs/positive_int", "default": 100},
                    "seed": {"$ref": "#/$defs/seed", "default": 0}}})

_LAZY = {"gaussian_noise_accuracy": ".noise", "minimal_perturbations": ".adversarial"}

__getattr__ = lazy_attributes(__name__, _LAZY)

def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
