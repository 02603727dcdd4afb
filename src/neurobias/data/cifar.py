"""CIFAR-10 / CIFAR-100 from the published python-version archives, into the prepared format.

The archives (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``, DESIGN.md section 5) hold
*pickled* batches. Unpickling can run code, so :func:`prepare_cifar` first checks the archive's md5
against the pinned value (the one :func:`neurobias.data.download.fetch` verified when it downloaded
the file) and only then reads the members straight from the tar file (never extracted to disk, so
no path in the archive is ever written) with ``pickle.load(f, encoding="bytes")``.

Splits: ``train`` and ``val`` partition the official training set (``val`` is a seeded,
class-stratified held-out part of ``n_val`` images); ``test`` is the official test set.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import SOURCES, ChecksumError, file_digests

Split = tuple[np.ndarray, np.ndarray]

CIFAR_LAYOUT = {
    "cifar10": {"root": "cifar-10-batches-py",
                "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "meta": "batches.meta", "label_key": b"labels", "names_key": b"label_names"},
    "cifar100": {"root": "cifar-100-python", "train": ["train"], "test": ["test"],
                 "meta": "meta", "label_key": b"fine_labels", "names_key": b"fine_label_names"},
}


class CifarFormatError(ValueError):
    """The archive does not have the published CIFAR layout."""


@dataclass
class PreparedDataset:
    """A dataset converted to the prepared format, before it is written with ``save_split``.

    ``splits`` maps ``train``/``val``/``test`` to ``(images uint8 [N, C, H, W], labels int64 [N])``;
    ``classes`` are the class names (index = label). For CIFAR-100, ``superclass_of_class[k]`` is the
    coarse (superclass) label of fine class ``k`` and ``superclasses`` the 20 coarse names (needed
    for Federer et al.'s within-superclass error); both are ``None`` for other datasets.

    Unpacks like the ``(splits, classes)`` pair every dataset source's builder returns::

        splits, classes = prepare_cifar(...)          # the common contract
        ds = prepare_cifar(...); ds.superclass_of_class  # the extra CIFAR-100 information
    """

    splits: dict[str, Split]
    classes: list[str]
    superclass_of_class: list[int] | None = None
    superclasses: list[str] | None = None

    def __iter__(self):
        return iter((self.splits, self.classes))


# -- shared helpers (also used by tiny_imagenet) -------------------------------------------------
def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``, rounded half up, as uint8.

    ``rgb``: uint8 [..., 3, H, W] (channel axis third from the end); returns [..., 1, H, W].
    Integer arithmetic (exact thousandths), so no float copy of a whole dataset is made.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-3] != 3:
        raise ValueError(f"luma expects 3 colour channels on axis -3, got shape {rgb.shape}")
    r, g, b = (rgb[..., c:c + 1, :, :].astype(np.uint32) for c in range(3))
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)


def stratified_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-stratified hold-out: ``(train_idx, val_idx)``, both sorted, disjoint.

    Each class contributes ``n_val * n_class / N`` images (largest-remainder rounding, so the total
    is exactly ``n_val``); which images is a seeded permutation within the class.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must lie in 0..{n - 1} (the training set has {n} images), got {n_val}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_val * counts / n
    quota = np.floor(exact).astype(int)
    short = n_val - quota.sum()
    order = np.lexsort((classes, -(exact - quota)))  # largest remainder first, ties by class
    quota[order[:short]] += 1
    rng = np.random.default_rng(seed)
    val = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx.astype(np.int64)


def verify_archive(path: Path, md5: str, what: str) -> None:
    """Refuse an archive whose md5 is not the pinned one (before anything reads its contents)."""
    actual = file_digests(path, ("md5",))["md5"]
    if actual != md5.lower():
        raise ChecksumError(
            f"{path} is not the published {what} archive: expected md5 {md5.lower()}, got {actual}. "
            f"Refusing to read it (its members are only parsed after verification). Delete it and "
            f"let the download rule fetch it again, or place a verified copy via the config's "
            f"manual_path key.")


# -- CIFAR -----------------------------------------------------------------------------------------
def _load_member(tar: tarfile.TarFile, name: str, archive: Path) -> dict:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise CifarFormatError(f"{archive}: member {name!r} not found; is this the python version "
                               f"of the CIFAR archive?") from None
    f = tar.extractfile(member)
    if f is None:
        raise CifarFormatError(f"{archive}: member {name!r} is not a regular file")
    with f:
        # Safe only because the archive's md5 was verified against the pinned value first.
        obj = pickle.load(f, encoding="bytes")
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{archive}: member {name!r} holds a {type(obj).__name__}, expected a dict")
    return obj


def _field(d: dict, key: bytes, name: str, archive: Path):
    if key not in d:
        raise CifarFormatError(f"{archive}: member {name!r} has no key {key!r} "
                               f"(found {sorted(d)[:8]})")
    return d[key]


def _decode(names) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def prepare_cifar(archive: str | Path, variant: str, grey: bool = False, n_val: int = 5000,
                  seed: int = 0, *, md5: str | None = None) -> PreparedDataset:
    """Read a CIFAR python-version ``.tar.gz`` into train/val/test splits.

    Parameters
    ----------
    archive: the downloaded ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``.
    variant: ``"cifar10"`` or ``"cifar100"`` (fine labels; the coarse ones are returned as
        ``superclass_of_class``).
    grey: convert to ITU-R BT.601 luma, ``C = 1`` (:func:`luma`).
    n_val: images held out of the official training set as ``val`` (seeded, class-stratified).
    seed: seed of the held-out selection.
    md5: checksum the archive must have; ``None`` = the pinned torchvision value for ``variant``.
        Its members are pickles and are unpickled only after this check passes.

    Returns a :class:`PreparedDataset` (unpacks as ``splits, classes``); images uint8
    [N, C, 32, 32], labels int64.
    """
    if variant not in CIFAR_LAYOUT:
        raise ValueError(f"variant must be one of {sorted(CIFAR_LAYOUT)}, got {variant!r}")
    archive = Path(archive)
    layout = CIFAR_LAYOUT[variant]
    verify_archive(archive, md5 or SOURCES[variant]["md5"], variant)

    def read(names, tar):
        images, labels, coarse = [], [], []
        for short in names:
            name = f"{layout['root']}/{short}"
            d = _load_member(tar, name, archive)
            data = np.asarray(_field(d, b"data", name, archive), dtype=np.uint8)
            lab = np.asarray(_field(d, layout["label_key"], name, archive), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != lab.shape[0]:
                raise CifarFormatError(f"{archive}: member {name!r} has data {data.shape} and "
                                       f"{lab.shape[0]} labels; expected [N, 3072] and N labels")
            images.append(data.reshape(-1, 3, 32, 32))  # rows are R(1024) G(1024) B(1024), row-major
            labels.append(lab)
            if variant == "cifar100":
                coarse.append(np.asarray(_field(d, b"coarse_labels", name, archive), dtype=np.int64))
        return (np.concatenate(images), np.concatenate(labels),
                np.concatenate(coarse) if coarse else None)

    with tarfile.open(archive, "r:gz") as tar:
        meta = _load_member(tar, f"{layout['root']}/{layout['meta']}", archive)
        classes = _decode(_field(meta, layout["names_key"], layout["meta"], archive))
        superclasses = (_decode(_field(meta, b"coarse_label_names", layout["meta"], archive))
                        if variant == "cifar100" else None)
        x_train, y_train, c_train = read(layout["train"], tar)
        x_test, y_test, c_test = read(layout["test"], tar)

    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= len(classes):
            raise CifarFormatError(f"{archive}: {split} labels outside 0..{len(classes) - 1}")

    superclass_of_class = None
    if variant == "cifar100":
        coarse_all = np.concatenate([c_train, c_test])
        fine_all = np.concatenate([y_train, y_test])
        superclass_of_class = []
        for k in range(len(classes)):
            found = np.unique(coarse_all[fine_all == k])
            if found.size != 1 or not 0 <= found[0] < len(superclasses):
                raise CifarFormatError(f"{archive}: fine class {k} ({classes[k]}) maps to coarse "
                                       f"labels {found.tolist()}; expected exactly one")
            superclass_of_class.append(int(found[0]))

    train_idx, val_idx = stratified_split(y_train, n_val, seed)
    splits = {"train": (x_train[train_idx], y_train[train_idx]),
              "val": (x_train[val_idx], y_train[val_idx]),
              "test": (x_test, y_test)}
    if grey:
        splits = {k: (luma(x), y) for k, (x, y) in splits.items()}
    splits = {k: (np.ascontiguousarray(x), y.astype(np.int64)) for k, (x, y) in splits.items()}
    return PreparedDataset(splits, classes, superclass_of_class, superclasses)


__all__ = ["CifarFormatError", "PreparedDataset", "luma", "prepare_cifar", "stratified_split",
           "verify_archive"]


def build_cifar10(params: dict) -> PreparedDataset:
    """The ``cifar10`` dataset source's builder (declared in :mod:`neurobias.data`)."""
    return prepare_cifar(params["archive"], "cifar10", grey=params["grey"], n_val=params["n_val"], seed=params["seed"])


def build_cifar100(params: dict) -> PreparedDataset:
    """The ``cifar100`` dataset source's builder (declared in :mod:`neurobias.data`)."""
    return prepare_cifar(params["archive"], "cifar100", grey=params["grey"], n_val=params["n_val"], seed=params["seed"])
