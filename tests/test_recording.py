"""Tests for neurobias.neural.recording: the .npz recording format, its validation and io."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from neurobias.neural.recording import TIERS, Recording, RecordingFormatError


def _arrays(n=6, repeats=3, neurons=4, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        images=rng.integers(0, 256, (n, h, w), dtype=np.uint8),
        responses=rng.poisson(3.0, (n, repeats, neurons)).astype(np.float32),
        image_ids=np.arange(100, 100 + n, dtype=np.int64),
        tiers=np.array(["train"] * (n - 2) + ["test"] * 2),
        meta={"source": "unit test", "seed": seed, "nested": {"units": "spikes", "list": [1, 2.5]}},
    )


def _write_npz(path, arrays):
    """Write a recording file directly, bypassing Recording's own validation."""
    a = dict(arrays)
    meta = a.pop("meta", None)
    if meta is not None:
        a["meta"] = np.array(json.dumps(meta)) if isinstance(meta, dict) else meta
    np.savez(path, **a)


# -- round trip ----------------------------------------------------------------------------------

def test_save_load_round_trip_preserves_arrays_and_meta(tmp_path):
    a = _arrays()
    a["responses"][1, 2, 3] = np.nan  # missing trials survive the round trip
    rec = Recording(**a)
    path = tmp_path / "sub" / "rec.npz"
    rec.save(path)
    out = Recording.load(path)
    assert np.array_equal(out.images, a["images"]) and out.images.dtype == np.uint8
    np.testing.assert_array_equal(out.responses, a["responses"])  # NaN == NaN here
    assert np.isnan(out.responses[1, 2, 3])
    assert out.responses.dtype == np.float32
    assert np.array_equal(out.image_ids, a["image_ids"]) and out.image_ids.dtype == np.int64
    assert out.tiers.tolist() == a["tiers"].tolist()
    assert out.meta == a["meta"]
    assert (out.n_images, out.n_repeats, out.n_neurons) == (6, 3, 4)


def test_save_is_atomic_and_leaves_no_tmp_file(tmp_path):
    rec = Recording(**_arrays())
    path = tmp_path / "rec.npz"
    rec.save(path)
    rec.save(path)  # overwriting an existing file is fine too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.npz"]


def test_save_with_non_npz_suffix_writes_exactly_that_path(tmp_path):
    rec = Recording(**_arrays())
    path = tmp_path / "rec.data"
    rec.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.data"]
    assert np.array_equal(Recording.load(path).images, rec.images)


def test_float64_responses_saved_as_float32(tmp_path):
    a = _arrays()
    a["responses"] = a["responses"].astype(np.float64)
    Recording(**a).save(tmp_path / "r.npz")
    out = Recording.load(tmp_path / "r.npz")
    assert out.responses.dtype == np.float32
    np.testing.assert_array_equal(out.responses, a["responses"].astype(np.float32))


# -- derived views -------------------------------------------------------------------------------

def test_trial_average_is_nan_aware():
    responses = np.array([
        [[1.0, 2.0], [3.0, np.nan], [np.nan, np.nan]],  # image 0
        [[4.0, np.nan], [np.nan, np.nan], [8.0, np.nan]],  # image 1: neuron 1 never recorded
    ], dtype=np.float32)                                   # [N=2, R=3, K=2]
    rec = Recording(images=np.zeros((2, 3, 3), np.uint8), responses=responses,
                    image_ids=np.array([0, 1]), tiers=np.array(["train", "test"]))
    avg = rec.trial_average()
    assert avg.shape == (2, 2) and avg.dtype == np.float32
    # by hand: mean over the recorded repeats only
    assert avg[0, 0] == pytest.approx((1 + 3) / 2)
    assert avg[0, 1] == pytest.approx(2.0)
    assert avg[1, 0] == pytest.approx((4 + 8) / 2)
    assert np.isnan(avg[1, 1])


def test_trial_average_equals_plain_mean_without_missing_trials():
    a = _arrays()
    rec = Recording(**a)
    np.testing.assert_allclose(rec.trial_average(), a["responses"].mean(axis=1), rtol=1e-6)


def test_tier_mask_and_subset():
    rec = Recording(**_arrays())
    assert rec.tier_mask("test").tolist() == [False] * 4 + [True] * 2
    assert np.array_equal(rec.tier_mask("train"), ~rec.tier_mask("test"))
    with pytest.raises(ValueError):
        rec.tier_mask("val")
    mask = np.array([True, False, True, False, True, True])
    sub = rec.subset(mask)
    assert np.array_equal(sub.image_ids, rec.image_ids[mask])
    assert np.array_equal(sub.responses, rec.responses[mask])
    assert sub.meta == rec.meta and sub.meta is not rec.meta
    # a subset without test images is not a valid recording
    with pytest.raises(RecordingFormatError):
        rec.subset(np.array([True, True, False, False, False, False]))


# -- validation on load: file path and field name in the message ---------------------------------

def _nan_neuron(a):
    a["responses"][:, :, 2] = np.nan


def _nan_image(a):
    a["responses"][3] = np.nan


def _inf(a):
    a["responses"][0, 0, 0] = np.inf


def _neg_inf(a):
    a["responses"][2, 1, 1] = -np.inf


BAD = {
    "images_2d": (lambda a: a.update(images=a["images"][:, 0]), "images"),
    "images_4d": (lambda a: a.update(images=a["images"][:, None]), "images"),
    "images_float": (lambda a: a.update(images=a["images"].astype(np.float32)), "images"),
    "images_int16": (lambda a: a.update(images=a["images"].astype(np.int16)), "images"),
    "responses_2d": (lambda a: a.update(responses=a["responses"][:, 0]), "responses"),
    "responses_int": (lambda a: a.update(responses=a["responses"].astype(np.int64)), "responses"),
    "image_count_mismatch": (lambda a: a.update(responses=a["responses"][:-1]), "responses"),
    "ids_wrong_length": (lambda a: a.update(image_ids=a["image_ids"][:-1]), "image_ids"),
    "ids_not_unique": (lambda a: a.update(image_ids=np.array([1, 2, 3, 3, 4, 5])), "image_ids"),
    "tiers_unknown": (lambda a: a.update(tiers=np.array(["train"] * 3 + ["val"] + ["test"] * 2)), "tiers"),
    "tiers_no_test": (lambda a: a.update(tiers=np.array(["train"] * 6)), "tiers"),
    "tiers_no_train": (lambda a: a.update(tiers=np.array(["test"] * 6)), "tiers"),
    "all_nan_neuron": (_nan_neuron, "responses"),
    "image_without_trial": (_nan_image, "responses"),
    "inf": (_inf, "responses"),
    "neg_inf": (_neg_inf, "responses"),
    "meta_not_json": (lambda a: a.update(meta=np.array("{not json")), "meta"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_load_rejects_bad_field_naming_file_and_field(tmp_path, name):
    mutate, field = BAD[name]
    a = _arrays()
    mutate(a)
    path = tmp_path / f"{name}.npz"
    _write_npz(path, a)
    with pytest.raises(RecordingFormatError) as info:
        Recording.load(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"'{field}'" in msg


def test_load_accepts_the_unmodified_base_arrays(tmp_path):
    # control for the parametrised rejections: the base file is valid
    path = tmp_path / "good.npz"
    _write_npz(path, _arrays())
    rec = Recording.load(path)
    assert rec.n_images == 6


def test_error_messages_say_which_neuron_or_image():
    a = _arrays()
    a["responses"][:, :, 2] = np.nan
    with pytest.raises(RecordingFormatError, match=r"neuron index \[2\]"):
        Recording(**a)
    a = _arrays()
    a["responses"][3] = np.nan
    with pytest.raises(RecordingFormatError, match=r"image index \[3\]"):
        Recording(**a)


def test_partially_missing_trials_are_accepted():
    a = _arrays()
    a["responses"][:, 1:, :] = np.nan      # only repeat 0 recorded: still valid
    a["responses"][0, 0, 0] = np.nan       # image 0 neuron 0 missing; neuron 0 seen elsewhere
    rec = Recording(**a)
    assert np.isnan(rec.trial_average()[0, 0])


def test_in_memory_construction_validates_too():
    a = _arrays()
    a["images"] = a["images"].astype(np.float32)
    with pytest.raises(RecordingFormatError, match="<in memory>.*'images'"):
        Recording(**a)


@pytest.mark.parametrize("key", ["images", "responses", "image_ids", "tiers", "meta"])
def test_load_rejects_missing_key(tmp_path, key):
    a = _arrays()
    a.pop(key)
    path = tmp_path / "missing.npz"
    _write_npz(path, a)
    with pytest.raises(RecordingFormatError) as info:
        Recording.load(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"'{key}'" in msg


def test_load_rejects_non_npz_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("this is not a zip archive\n")
    with pytest.raises(RecordingFormatError, match=re.escape(str(path))):
        Recording.load(path)


def test_load_rejects_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(RecordingFormatError, match=re.escape(str(path))):
        Recording.load(path)


def test_load_refuses_object_arrays(tmp_path):
    # allow_pickle=False: an object-dtype array must be refused, not unpickled
    a = _arrays()
    a["meta"] = np.array([{"x": 1}], dtype=object)
    path = tmp_path / "pickled.npz"
    _write_npz(path, a)
    with pytest.raises(RecordingFormatError, match=re.escape(str(path))):
        Recording.load(path)


def test_load_rejects_npy_file(tmp_path):
    path = tmp_path / "rec.npy"
    np.save(path, np.zeros((2, 3)))
    with pytest.raises(RecordingFormatError, match="rec.npy"):
        Recording.load(path)


def test_tiers_constant():
    assert TIERS == ("train", "test")



def test_meta_must_be_an_object_and_ids_integers(tmp_path):
    arrays = _arrays()
    arrays["meta"] = np.array("[1, 2]")
    _write_npz(tmp_path / "list_meta.npz", arrays)
    with pytest.raises(RecordingFormatError, match="'meta' must be a JSON object"):
        Recording.load(tmp_path / "list_meta.npz")
    arrays = _arrays()
    arrays["image_ids"] = arrays["image_ids"].astype(float)
    _write_npz(tmp_path / "float_ids.npz", arrays)
    with pytest.raises(RecordingFormatError, match="'image_ids' must be integers"):
        Recording.load(tmp_path / "float_ids.npz")
