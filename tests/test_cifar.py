"""Tests for neurobias.data.cifar (the CIFAR-10 and CIFAR-100 preparer), offline.

The fixture archives are generated here, small, in the exact upstream layout: the CIFAR batches are
written as Python-2-style pickles (byte-string keys and buffers, as the published files are, hence
``encoding="bytes"``).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from neurobias.data.cifar import PreparedDataset, luma, prepare_cifar, stratified_split
from neurobias.data.download import ChecksumError


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- Python-2-style pickles (what the published CIFAR batches are) -----------------------------
class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, like cPickle did for the CIFAR batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                    else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class _Evil:
    """Unpickling this creates a file: proof that a pickle runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- CIFAR fixtures ------------------------------------------------------------------------------
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": 20 for i in range(1, 6)} | {"test_batch": 20}
    raw = {}
    path = tmp_path_factory.mktemp("cifar10") / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        _add(tar, "cifar-10-batches-py/batches.meta", _py2_pickle(
            {b"num_cases_per_batch": 20, b"label_names": [n.encode() for n in CIFAR10_NAMES],
             b"num_vis": 3072}))
        for k, (name, n) in enumerate(batches.items()):
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = [int(v) for v in (np.arange(n) + 2 * k) % 10]
            if name == "test_batch":
                data[0, [0, 1024, 2048]] = (200, 100, 50)  # R, G, B of test image 0 at (0, 0)
            raw[name] = (data, labels)
            _add(tar, f"cifar-10-batches-py/{name}", _py2_pickle(
                {b"batch_label": f"batch {k}".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{k}_{i}.png".encode() for i in range(n)]}))
    return path, raw


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    rng = np.random.default_rng(1)
    coarse_of_fine = rng.permutation(100) // 5  # 5 fine classes per superclass, not in label order
    fine_names = [f"fine{i}" for i in range(100)]
    coarse_names = [f"coarse{i}" for i in range(20)]
    path = tmp_path_factory.mktemp("cifar100") / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", _py2_pickle(
            {b"fine_label_names": [n.encode() for n in fine_names],
             b"coarse_label_names": [n.encode() for n in coarse_names]}))
        for name, n in (("train", 200), ("test", 100)):
            fine = np.arange(n) % 100
            _add(tar, f"cifar-100-python/{name}", _py2_pickle(
                {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                 b"fine_labels": [int(v) for v in fine],
                 b"coarse_labels": [int(coarse_of_fine[v]) for v in fine],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}))
    return path, coarse_of_fine, fine_names, coarse_names


def test_cifar10_shapes_labels_and_pixel_layout(cifar10):
    path, raw = cifar10
    ds = prepare_cifar(path, "cifar10", n_val=20, seed=3, md5=_md5(path))
    splits, classes = ds  # unpacks like every dataset source's builder's result
    assert isinstance(ds, PreparedDataset) and ds.superclass_of_class is None
    assert classes == CIFAR10_NAMES
    assert {k: v[0].shape for k, v in splits.items()} == {
        "train": (80, 3, 32, 32), "val": (20, 3, 32, 32), "test": (20, 3, 32, 32)}
    for x, y in splits.values():
        assert x.dtype == np.uint8 and y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    # the official test set is the test split, in its published order; rows are R, G, B planes
    data, labels = raw["test_batch"]
    x_test, y_test = splits["test"]
    np.testing.assert_array_equal(y_test, labels)
    np.testing.assert_array_equal(x_test.reshape(20, -1), data)
    assert x_test[0, 0, 0, 1] == data[0, 1] and x_test[0, 1, 0, 0] == data[0, 1024]
    assert x_test[0, 2, 1, 0] == data[0, 2048 + 32]

    # train + val partition the official training set; val is stratified (2 per class)
    train_rows = np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = np.concatenate([raw[f"data_batch_{i}"][1] for i in range(1, 6)])
    key = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert key(splits["train"][0]).isdisjoint(key(splits["val"][0]))
    assert key(splits["train"][0]) | key(splits["val"][0]) == key(train_rows)
    assert np.bincount(splits["val"][1], minlength=10).tolist() == [2] * 10
    row_label = {r.tobytes(): l for r, l in zip(train_rows, train_labels)}
    for split in ("train", "val"):
        x, y = splits[split]
        assert [row_label[r.tobytes()] for r in x.reshape(len(x), -1)] == y.tolist()
    # seeded: same seed same split, other seed other split
    again = prepare_cifar(path, "cifar10", n_val=20, seed=3, md5=_md5(path)).splits["val"][0]
    other = prepare_cifar(path, "cifar10", n_val=20, seed=4, md5=_md5(path)).splits["val"][0]
    np.testing.assert_array_equal(again, splits["val"][0])
    assert not np.array_equal(other, splits["val"][0])


def test_cifar_grey_is_itu601_luma(cifar10):
    path, _ = cifar10
    colour, _ = prepare_cifar(path, "cifar10", n_val=20, md5=_md5(path))
    grey, _ = prepare_cifar(path, "cifar10", grey=True, n_val=20, md5=_md5(path))
    for split in colour:
        assert grey[split][0].shape == colour[split][0].shape[:1] + (1, 32, 32)
        np.testing.assert_array_equal(grey[split][1], colour[split][1])
    assert grey["test"][0][0, 0, 0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50) == 124
    r, g, b = (int(v) for v in colour["train"][0][5, :, 7, 9])
    assert grey["train"][0][5, 0, 7, 9] == int(np.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5))
    np.testing.assert_array_equal(luma(colour["val"][0]), grey["val"][0])


def test_cifar100_fine_labels_and_superclasses(cifar100):
    path, coarse_of_fine, fine_names, coarse_names = cifar100
    ds = prepare_cifar(path, "cifar100", n_val=100, seed=0, md5=_md5(path))
    assert ds.classes == fine_names and ds.superclasses == coarse_names
    assert ds.superclass_of_class == coarse_of_fine.tolist()
    assert {k: len(v[1]) for k, v in ds.splits.items()} == {"train": 100, "val": 100, "test": 100}
    assert np.bincount(ds.splits["val"][1], minlength=100).tolist() == [1] * 100
    assert ds.splits["train"][1].max() == 99 and ds.splits["train"][0].dtype == np.uint8


def test_cifar_archive_checksum_checked_before_unpickling(tmp_path, cifar10):
    path, _ = cifar10
    with pytest.raises(ChecksumError, match="expected md5 c58f30108f718f92721af3b95e74349a"):
        prepare_cifar(path, "cifar10")  # default: the pinned published md5
    marker = tmp_path / "pwned"
    evil = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(_Evil(marker)))
    with pytest.raises(ChecksumError):
        prepare_cifar(evil, "cifar10", md5="0" * 32)
    assert not marker.exists()


def test_stratified_split_exact_and_proportional():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    tr, va = stratified_split(labels, 10, seed=0)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    assert np.bincount(labels[va]).tolist() == [5, 3, 2]
    tr0, va0 = stratified_split(labels, 0, seed=0)
    assert len(va0) == 0 and len(tr0) == 100
    with pytest.raises(ValueError, match="n_val"):
        stratified_split(labels, 100, seed=0)
