"""Tiny ImageNet (200 classes, 64x64) from the published ``tiny-imagenet-200.zip``.

Layout read (DESIGN.md section 5)::

    tiny-imagenet-200/wnids.txt                       200 WordNet ids, one a line (class order)
    tiny-imagenet-200/words.txt                       optional: "<wnid>\\t<name>, <synonym>, ..."
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      500 training images per class
    tiny-imagenet-200/val/images/*.JPEG               10 000 validation images
    tiny-imagenet-200/val/val_annotations.txt         "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>"

Splits: the official *test* set has no public labels, so the official validation set (labels in
``val_annotations.txt``) is our ``test`` split; ``val`` is a seeded, class-stratified part of the
official training set (``n_val_from_train`` images), ``train`` the rest.

The archive's md5 is checked against the pinned value before anything in it is decoded; images are
decoded with PIL straight from the zip (nothing is extracted to disk), ``convert("RGB")`` because
some images are greyscale.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .cifar import PreparedDataset, luma, stratified_split, verify_archive
from .download import SOURCES

SIZE = 64


class TinyImageNetFormatError(ValueError):
    """The zip does not have the published Tiny ImageNet layout."""


def _root(names: list[str], archive: Path) -> str:
    roots = sorted({n[: -len("wnids.txt")] for n in names if n.endswith("wnids.txt")
                    and n.count("/") <= 1})
    if len(roots) != 1:
        raise TinyImageNetFormatError(f"{archive}: expected one 'tiny-imagenet-200/wnids.txt', "
                                      f"found {len(roots)}")
    return roots[0]


def _class_names(zf: zipfile.ZipFile, root: str, wnids: list[str]) -> list[str]:
    """First name of each wnid from words.txt (disambiguated by wnid if repeated); else the wnid."""
    words = {}
    if f"{root}words.txt" in zf.NameToInfo:
        for line in zf.read(f"{root}words.txt").decode("utf-8").splitlines():
            wnid, _, names = line.partition("\t")
            if names:
                words[wnid.strip()] = names.split(",")[0].strip()
    names = [words.get(w, w) for w in wnids]
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n} ({w})" if n in repeated else n for n, w in zip(names, wnids)]


def _decode(zf: zipfile.ZipFile, name: str, grey: bool, archive: Path) -> np.ndarray:
    with Image.open(io.BytesIO(zf.read(name))) as im:
        im = im.convert("RGB")
        if im.size != (SIZE, SIZE):
            raise TinyImageNetFormatError(f"{archive}: {name} is {im.size[0]}x{im.size[1]}, "
                                          f"expected {SIZE}x{SIZE}")
        arr = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # [3, H, W]
    return luma(arr) if grey else arr


def prepare_tiny_imagenet(zip_path: str | Path, grey: bool = False, n_val_from_train: int = 0,
                          seed: int = 0, *, md5: str | None = None) -> PreparedDataset:
    """Read ``tiny-imagenet-200.zip`` into train/val/test splits (see the module docstring).

    Parameters
    ----------
    zip_path: the downloaded archive.
    grey: ITU-R BT.601 luma, ``C = 1``.
    n_val_from_train: images held out of the official training set as ``val`` (seeded,
        class-stratified); 0 gives an empty ``val`` split.
    seed: seed of that selection.
    md5: checksum the archive must have; ``None`` = the pinned published value.

    Returns a :class:`~neurobias.data.cifar.PreparedDataset` (unpacks as ``splits, classes``):
    images uint8 [N, C, 64, 64], labels int64 in wnids.txt order. Training images are ordered by
    class (wnids.txt order) then file name; test images follow ``val_annotations.txt``.
    """
    archive = Path(zip_path)
    verify_archive(archive, md5 or SOURCES["tiny_imagenet"]["md5"], "Tiny ImageNet")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        root = _root(names, archive)
        wnids = [w.strip() for w in zf.read(f"{root}wnids.txt").decode("utf-8").splitlines() if w.strip()]
        if len(set(wnids)) != len(wnids):
            raise TinyImageNetFormatError(f"{archive}: wnids.txt lists a wnid twice")
        index = {w: k for k, w in enumerate(wnids)}
        classes = _class_names(zf, root, wnids)

        train_files = {w: [] for w in wnids}
        prefix = f"{root}train/"
        for n in names:
            if n.startswith(prefix) and n.lower().endswith(".jpeg"):
                parts = n[len(prefix):].split("/")
                if len(parts) == 3 and parts[1] == "images":
                    if parts[0] not in index:
                        raise TinyImageNetFormatError(f"{archive}: training image {n} belongs to "
                                                      f"{parts[0]!r}, which is not in wnids.txt")
                    train_files[parts[0]].append(n)
        empty = [w for w, files in train_files.items() if not files]
        if empty:
            raise TinyImageNetFormatError(f"{archive}: no training images for {len(empty)} class(es), "
                                          f"e.g. {empty[:3]} (expected train/<wnid>/images/*.JPEG)")
        train_list = [(n, index[w]) for w in wnids for n in sorted(train_files[w])]

        ann_name = f"{root}val/val_annotations.txt"
        if ann_name not in zf.NameToInfo:
            raise TinyImageNetFormatError(f"{archive}: missing {ann_name}")
        test_list = []
        for i, line in enumerate(zf.read(ann_name).decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1].strip() not in index:
                raise TinyImageNetFormatError(f"{archive}: {ann_name} line {i} {line!r}: expected "
                                              f"'<file>\\t<wnid>\\t<box>' with a wnid from wnids.txt")
            member = f"{root}val/images/{fields[0].strip()}"
            if member not in zf.NameToInfo:
                raise TinyImageNetFormatError(f"{archive}: {ann_name} line {i} names {member}, "
                                              f"which is not in the archive")
            test_list.append((member, index[fields[1].strip()]))

        channels = 1 if grey else 3

        def decode_all(items):
            x = np.empty((len(items), channels, SIZE, SIZE), dtype=np.uint8)
            for j, (member, _) in enumerate(items):
                x[j] = _decode(zf, member, grey, archive)
            return x, np.array([k for _, k in items], dtype=np.int64)

        # Split on the labels first, then decode each split once (no copy of a 1.2 GB array).
        train_idx, val_idx = stratified_split(np.array([k for _, k in train_list]),
                                              n_val_from_train, seed)
        splits = {"train": decode_all([train_list[i] for i in train_idx]),
                  "val": decode_all([train_list[i] for i in val_idx]),
                  "test": decode_all(test_list)}
    return PreparedDataset(splits, classes)


__all__ = ["TinyImageNetFormatError", "prepare_tiny_imagenet"]


def build(params: dict):
    """The ``tiny_imagenet`` dataset source's builder (declared in :mod:`neurobias.data`)."""
    return prepare_tiny_imagenet(params["archive"], grey=params["grey"], n_val_from_train=params["n_val"],
                                 seed=params["seed"])
