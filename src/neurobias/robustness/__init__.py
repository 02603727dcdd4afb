"""Robustness evaluations. Each returns records that the jobs turn into tidy rows;
:data:`EVALUATIONS` maps the config's ``evaluations`` names to them (the extension point for
corruptions and image manipulations)."""

from .adversarial import minimal_perturbations
from .noise import gaussian_noise_accuracy

EVALUATIONS = {"gaussian_noise": gaussian_noise_accuracy, "adversarial": minimal_perturbations}
