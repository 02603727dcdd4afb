"""Tests for neurobias.data.prepared: the prepared split format (tensor files), its validation and io."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurobias.data.prepared import PreparedDataError, load_split, save_split, validate_split
from neurobias.data.synthetic import CLASS_NAMES, make_synthetic_task


def _valid_split(n=6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    labels = np.arange(n) % 3
    return images, labels, ["a", "b", "c"]


def test_prepared_round_trip(tmp_path):
    images, labels, classes = _valid_split()
    path = tmp_path / "data" / "synthetic" / "train.pt"
    save_split(path, images, labels, classes)
    assert not path.with_name(path.name + ".tmp").exists()
    out_images, out_labels, out_classes = load_split(path)
    assert out_images.dtype == torch.uint8 and out_labels.dtype == torch.int64
    assert np.array_equal(out_images.numpy(), images)
    assert np.array_equal(out_labels.numpy(), labels)
    assert out_classes == classes


def test_prepared_round_trip_of_synthetic_task(tmp_path):
    images, labels = make_synthetic_task(0, n_train=20, n_val=10, n_test=10)["train"]
    save_split(tmp_path / "train.pt", images, labels, list(CLASS_NAMES))
    out_images, out_labels, out_classes = load_split(tmp_path / "train.pt")
    assert np.array_equal(out_images.numpy(), images)
    assert np.array_equal(out_labels.numpy(), labels)
    assert out_classes == list(CLASS_NAMES)


def test_save_split_refuses_invalid_data_and_writes_nothing(tmp_path):
    images, labels, classes = _valid_split()
    path = tmp_path / "bad.pt"
    with pytest.raises(PreparedDataError, match="labels"):
        save_split(path, images, labels + 5, classes)
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def _good_payload():
    images, labels, classes = _valid_split()
    return {"images": torch.as_tensor(images), "labels": torch.as_tensor(labels, dtype=torch.int64),
            "classes": classes}


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.update(images=p["images"].float()), "images"),
    (lambda p: p.update(images=p["images"][:, 0]), "images"),                    # 3-D images
    (lambda p: p.update(labels=p["labels"].to(torch.int32)), "labels"),
    (lambda p: p.update(labels=p["labels"][:-1]), "labels"),                     # wrong length
    (lambda p: p.update(labels=p["labels"] + 1), "labels"),                      # max == n_classes
    (lambda p: p.update(labels=p["labels"] - 1), "labels"),                      # negative label
    (lambda p: p.pop("labels"), "labels"),
    (lambda p: p.pop("images"), "images"),
    (lambda p: p.pop("classes"), "classes"),
])
def test_load_split_rejects_bad_payload_naming_file_and_field(tmp_path, mutate, field):
    payload = _good_payload()
    mutate(payload)
    path = tmp_path / "split.pt"
    torch.save(payload, path)
    with pytest.raises(PreparedDataError) as info:
        load_split(path)
    msg = str(info.value)
    assert str(path) in msg
    assert field in msg


def test_load_split_accepts_the_unmodified_good_payload(tmp_path):
    # control for the parametrised test above: the base payload itself is valid
    torch.save(_good_payload(), tmp_path / "split.pt")
    images, labels, classes = load_split(tmp_path / "split.pt")
    assert images.shape == (6, 3, 8, 8) and labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_validate_split_label_range_is_tied_to_number_of_classes():
    payload = _good_payload()
    payload["classes"] = ["a", "b"]   # labels go up to 2, so a third class name is needed
    with pytest.raises(PreparedDataError, match="src"):
        validate_split(payload, "src")


def test_load_split_rejects_non_dict_payload(tmp_path):
    path = tmp_path / "split.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(PreparedDataError, match="split.pt"):
        load_split(path)
