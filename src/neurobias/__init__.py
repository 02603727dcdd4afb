"""neurobias: transfer the brain's inductive bias into vision models, then measure robustness."""
__version__ = "0.1.0"
