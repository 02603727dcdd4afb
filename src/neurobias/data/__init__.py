"""Datasets, all converted to one prepared tensor format (:mod:`neurobias.data.prepared`).

Extension point: :data:`DATASET_BUILDERS` maps a dataset ``source`` (the config's
``datasets.<name>.source``) to a function ``(params) -> (splits, classes)`` where splits is
``{split: (images uint8 [N,C,H,W], labels int64 [N])}``; the result may also carry
``superclass_of_class`` / ``superclasses`` attributes. Downloaded sources get the verified
archive's path as ``params["archive"]``. ``params`` is a validated config entry: the schema's
defaults are filled in (:func:`neurobias.config.validate_config`).
"""

from .prepared import PreparedDataError, load_split, load_superclasses, save_split
from .synthetic import CLASS_NAMES, make_synthetic_task


def _synthetic(params: dict):
    keys = ("seed", "n_train", "n_val", "n_test", "image_size", "shortcut_amplitude",
            "shortcut_probability", "clutter")
    splits = make_synthetic_task(**{k: params[k] for k in keys if k in params})
    if params.get("grey"):  # one luma channel, as grey Tiny ImageNet (Safarani 2021)
        from .cifar import luma
        splits = {name: (luma(images), labels) for name, (images, labels) in splits.items()}
    return splits, list(CLASS_NAMES)


def _cifar(variant):
    def build(params: dict):
        from .cifar import prepare_cifar
        return prepare_cifar(params["archive"], variant, grey=params["grey"], n_val=params["n_val"],
                             seed=params["seed"])
    return build


def _tiny_imagenet(params: dict):
    from .tiny_imagenet import prepare_tiny_imagenet
    return prepare_tiny_imagenet(params["archive"], grey=params["grey"], n_val_from_train=params["n_val"],
                                 seed=params["seed"])


DATASET_BUILDERS = {"synthetic": _synthetic, "cifar10": _cifar("cifar10"), "cifar100": _cifar("cifar100"),
                    "tiny_imagenet": _tiny_imagenet}

__all__ = ["DATASET_BUILDERS", "PreparedDataError", "load_split", "load_superclasses", "save_split"]
