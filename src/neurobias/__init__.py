"""neurobias: transfer the brain's inductive bias into vision models, then measure robustness."""
__version__ = "0.2.0"  # 0.2: the authors' readout, manipulations and VOneBlock (a checkpoint of 0.1 is not resumed)
