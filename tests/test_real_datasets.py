"""Tests for the real-data preparers (CIFAR, Tiny ImageNet, Cadena et al. 2019), offline.

Every fixture archive is generated here, small, in the exact upstream layout: the CIFAR batches are
written as Python-2-style pickles (byte-string keys and buffers, as the published files are, hence
``encoding="bytes"``), Tiny ImageNet as a zip of JPEGs with ``val_annotations.txt``, Cadena as a
pickled dict with the published keys and axis order.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from neurobias.data.cifar import PreparedDataset, luma, prepare_cifar, stratified_split
from neurobias.data.download import ChecksumError
from neurobias.data.tiny_imagenet import prepare_tiny_imagenet
from neurobias.neural.cadena import CADENA_MEMBER, cadena_recording
from neurobias.neural.recording import Recording, RecordingFormatError


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


# -- Tiny ImageNet ---------------------------------------------------------------------------
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


# -- Cadena et al. 2019 ------------------------------------------------------------------------
def _cadena_dict(n=12, neurons=3, repeats=4, unique_ids=True):
    rng = np.random.default_rng(7)
    responses = rng.poisson(2.0, (repeats, n, neurons)).astype(np.float64)
    responses[rng.random(responses.shape) < 0.1] = np.nan
    responses[:, :, 2] = np.nan           # a neuron never recorded
    responses[2:, :, 1] = np.nan          # a session with only 2 repeats
    responses[:, 10, :] = np.nan          # an image with no recorded trial
    responses[1, 3, 0] = 17.0             # a known value: repeat 1, image 3, neuron 0
    types = np.array(["original", "conv1", "conv2", "conv3", "conv4"] * 3)[:n]
    ids = (2000 + np.arange(n)) if unique_ids else np.repeat(np.arange(n // 2), 2)
    return {"images": rng.integers(0, 256, (n, 140, 140)).astype(np.float64),
            "responses": responses,
            "repetitions": np.array([4, 2, 4]),
            "subject_id": np.array([1, 1, 3]),
            "image_ids": ids.reshape(n, 1),
            "image_types": types.reshape(n, 1),
            "image_numbers": np.arange(n).reshape(n, 1)}


@pytest.fixture
def cadena_pkl(tmp_path):
    data = _cadena_dict()
    path = tmp_path / "cadena_ploscb_data.pkl"
    path.write_bytes(pickle.dumps(data))
    return path, data


def test_cadena_conversion(cadena_pkl, capsys, tmp_path):
    path, data = cadena_pkl
    rec = cadena_recording(path, sha256=_sha256(path))
    note = capsys.readouterr().err
    assert "dropping 1 neuron" in note and "dropping 1 image" in note
    assert rec.images.shape == (11, 140, 140) and rec.images.dtype == np.uint8
    assert rec.responses.shape == (11, 4, 2) and rec.responses.dtype == np.float32
    # transposition [repeat, image, neuron] -> [image, repeat, neuron]
    assert rec.responses[3, 1, 0] == 17.0
    np.testing.assert_array_equal(rec.responses[:10], data["responses"][:, :10, :2].transpose(1, 0, 2))
    np.testing.assert_array_equal(rec.images[0], data["images"][0].astype(np.uint8))
    # ids kept (unique), image 10 dropped; tiers: first int(12 * 0.8) = 9 published images train
    assert rec.image_ids.tolist() == [2000 + i for i in range(12) if i != 10]
    assert rec.tiers.tolist() == ["train"] * 9 + ["test"] * 2
    assert rec.meta["dropped_neurons"] == [2] and rec.meta["dropped_images"] == [10]
    assert rec.meta["licence"] == "CC BY-NC-ND 4.0 — download at run time, never redistribute"
    assert rec.meta["subject_id"] == [1, 1] and rec.meta["repetitions"] == [4, 2]
    assert rec.meta["image_types"][:3] == ["original", "conv1", "conv2"]
    assert len(rec.meta["image_types"]) == 11
    assert rec.meta["sha256"] == _sha256(path)
    assert np.isnan(rec.responses[:, 2:, 1]).all()  # 2-repeat session: NaN kept, not duplicated
    # the result is a valid, storable recording
    rec.save(tmp_path / "cadena.npz")
    back = Recording.load(tmp_path / "cadena.npz")
    np.testing.assert_array_equal(back.responses, rec.responses)
    assert json.loads(json.dumps(back.meta)) == back.meta


def test_cadena_from_zip_and_non_unique_ids(tmp_path):
    data = _cadena_dict(unique_ids=False)
    path = tmp_path / "2e31e304e03d6357c98ac735a1fe5788.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Cadena_PlosCB19_data/README.md", "readme")
        zf.writestr(CADENA_MEMBER, pickle.dumps(data))
    rec = cadena_recording(path, sha256=_sha256(path), train_fraction=0.5)
    assert rec.image_ids.tolist() == [i for i in range(12) if i != 10]
    assert rec.meta["source_image_ids"][:4] == [0, 0, 1, 1]
    assert rec.tiers.tolist() == ["train"] * 6 + ["test"] * 5
    assert CADENA_MEMBER in rec.meta["file"]


def test_cadena_refuses_unverified_pickle_before_unpickling(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "cadena_ploscb_data.pkl"
    evil.write_bytes(pickle.dumps({"images": _Evil(marker)}))
    actual = _sha256(evil)

    wrong = "ab" * 32
    with pytest.raises(ChecksumError) as e:
        cadena_recording(evil, sha256=wrong, config_key="recordings.cadena.sha256")
    msg = str(e.value)
    assert str(evil) in msg and wrong in msg and actual in msg
    assert not marker.exists()

    with pytest.raises(ChecksumError) as e:
        cadena_recording(evil, sha256=None, config_key="recordings.cadena.sha256")
    msg = str(e.value)
    assert actual in msg and "recordings.cadena.sha256" in msg and "gin.g-node.org" in msg
    assert not marker.exists()

    # control: with the matching checksum it IS unpickled (the test above is not vacuous)
    with pytest.raises(RecordingFormatError):
        cadena_recording(evil, sha256=actual)
    assert marker.exists()
