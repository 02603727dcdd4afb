"""Tests for neurobias.neural.cadena (Cadena et al. 2019's recording), offline, on a pickled dict with
the published keys and axis order generated here."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest

from neurobias.data.download import ChecksumError
from neurobias.neural.cadena import CADENA_MEMBER, cadena_recording
from neurobias.neural.recording import Recording, RecordingFormatError
from test_cifar import _Evil


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
