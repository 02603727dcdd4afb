"""Datasets, all converted to one prepared tensor format (:mod:`neurobias.data.prepared`).

Extension point: :data:`DATASET_BUILDERS` maps a dataset ``source`` (the config's
``datasets.<name>.source``) to a function ``(params) -> {split: (images, labels)}`` plus class names.
"""

from .prepared import PreparedDataError, load_split, save_split
from .synthetic import CLASS_NAMES, make_synthetic_task


def _synthetic(params: dict):
    keys = ("seed", "n_train", "n_val", "n_test", "image_size", "shortcut_amplitude",
            "shortcut_probability", "clutter")
    return make_synthetic_task(**{k: params[k] for k in keys if k in params}), list(CLASS_NAMES)


DATASET_BUILDERS = {"synthetic": _synthetic}

__all__ = ["DATASET_BUILDERS", "PreparedDataError", "load_split", "save_split"]
