"""Tests for neurobias.data.tiny_imagenet, offline, on a zip of JPEGs with ``val_annotations.txt``
generated here in the exact upstream layout."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from neurobias.data.download import ChecksumError
from neurobias.data.tiny_imagenet import prepare_tiny_imagenet
from test_cifar import _md5


WNIDS = ["n01443537", "n01629819", "n02099601"]
COLOURS = {0: (220, 40, 40), 1: (40, 200, 60), 2: (50, 60, 210)}


def _jpeg(colour, mode="RGB"):
    buf = io.BytesIO()
    img = Image.new("RGB", (64, 64), colour)
    (img.convert("L") if mode == "L" else img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200.zip"
    root = "tiny-imagenet-200/"
    val = [(f"val_{i}.JPEG", WNIDS[c]) for i, c in enumerate([2, 0, 1, 1, 0, 2])]
    with zipfile.ZipFile(path, "w") as zf:
        for d in ("", "train/", "val/", "val/images/", "test/", "test/images/"):
            zf.writestr(zipfile.ZipInfo(root + d), "")
        zf.writestr(root + "wnids.txt", "\n".join(WNIDS) + "\n")
        zf.writestr(root + "words.txt", "n00001740\tentity\n" + "".join(
            f"{w}\t{name}\n" for w, name in zip(WNIDS, ["goldfish, Carassius auratus",
                                                        "European fire salamander, Salamandra",
                                                        "golden retriever"])))
        for c, w in enumerate(WNIDS):
            zf.writestr(f"{root}train/{w}/{w}_boxes.txt", "")
            for k in range(4):
                mode = "L" if (c, k) == (1, 2) else "RGB"  # some published images are greyscale
                zf.writestr(f"{root}train/{w}/images/{w}_{k}.JPEG", _jpeg(COLOURS[c], mode))
        for name, w in val:
            zf.writestr(f"{root}val/images/{name}", _jpeg(COLOURS[WNIDS.index(w)]))
        zf.writestr(root + "val/val_annotations.txt",
                    "".join(f"{name}\t{w}\t0\t3\t60\t62\n" for name, w in val))
        zf.writestr(root + "test/images/test_0.JPEG", _jpeg((0, 0, 0)))
    return path, [WNIDS.index(w) for _, w in val]


def test_tiny_imagenet_splits_and_labels(tiny):
    path, val_labels = tiny
    splits, classes = prepare_tiny_imagenet(path, n_val_from_train=3, seed=0, md5=_md5(path))
    assert classes == ["goldfish", "European fire salamander", "golden retriever"]
    assert {k: v[0].shape for k, v in splits.items()} == {
        "train": (9, 3, 64, 64), "val": (3, 3, 64, 64), "test": (6, 3, 64, 64)}
    for x, y in splits.values():
        assert x.dtype == np.uint8 and y.dtype == np.int64
    assert splits["val"][1].tolist() == [0, 1, 2] and np.bincount(splits["train"][1]).tolist() == [3, 3, 3]
    # the official val set is the test split, labelled by val_annotations.txt, in its order
    x_test, y_test = splits["test"]
    assert y_test.tolist() == val_labels
    for x, y in splits.values():
        means = x.reshape(len(x), 3, -1).mean(axis=2)
        expected = np.array([COLOURS[int(k)] for k in y])
        is_grey = np.ptp(means, axis=1) < 3  # the greyscale training image
        assert is_grey.sum() <= 1
        assert np.all(np.abs(means - expected)[~is_grey] < 8)


def test_tiny_imagenet_grey_and_checksum(tiny, tmp_path):
    path, _ = tiny
    colour, _ = prepare_tiny_imagenet(path, md5=_md5(path))
    grey, _ = prepare_tiny_imagenet(path, grey=True, md5=_md5(path))
    assert colour["val"][0].shape == (0, 3, 64, 64) and colour["train"][0].shape[0] == 12
    assert grey["test"][0].shape == (6, 1, 64, 64)
    r, g, b = (int(v) for v in colour["test"][0][0, :, 10, 20])
    assert grey["test"][0][0, 0, 10, 20] == int(np.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5))
    with pytest.raises(ChecksumError, match="90528d7ca1a48142e341f4ef8d21d0de"):
        prepare_tiny_imagenet(path)
