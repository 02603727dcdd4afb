"""Robustness evaluations. Each returns tidy records; :data:`EVALUATIONS` maps the config's
``evaluation`` names to them (the extension point for corruptions, attacks, manipulations)."""

from .noise import gaussian_noise_accuracy

EVALUATIONS = {"gaussian_noise": gaussian_noise_accuracy}
