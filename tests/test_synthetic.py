"""Tests for neurobias.data.synthetic (the embedded task); its prepared format: tests/test_prepared.py."""

from __future__ import annotations

import numpy as np
import pytest

from neurobias.data.synthetic import (
    CLASS_NAMES,
    N_CLASSES,
    SHORTCUT_CODES,
    make_stimulus_images,
    make_synthetic_task,
    to_grey,
    to_uint8,
)

SMALL = dict(n_train=40, n_val=20, n_test=20)


def _code_match_rate(images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images whose corner patch best matches the label's shortcut code.

    The code sits on pixels [1:7, 1:7] as 3x3 cells of 2x2 pixels. Averaging each cell (over colour
    channels and its 4 pixels) and subtracting the patch mean removes the local background (the
    clutter is low-pass, nearly constant over 6 px); the remaining sign pattern is compared with
    every class's code by Pearson correlation and the best-matching class is taken.
    """
    patch = images[:, :, 1:7, 1:7].astype(np.float64).mean(axis=1)          # [N, 6, 6]
    cells = patch.reshape(len(images), 3, 2, 3, 2).mean(axis=(2, 4)).reshape(len(images), 9)
    codes = SHORTCUT_CODES[:, ::2, ::2].reshape(N_CLASSES, 9).astype(np.float64)
    c = cells - cells.mean(axis=1, keepdims=True)
    k = codes - codes.mean(axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-12
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    return float(((c @ k.T).argmax(axis=1) == labels).mean())


# -- shortcut codes ------------------------------------------------------------------------------

def test_shortcut_codes_are_ten_distinct_pm1_3x3_patterns_of_2x2_cells():
    assert SHORTCUT_CODES.shape == (N_CLASSES, 6, 6)
    assert set(np.unique(SHORTCUT_CODES).tolist()) == {-1.0, 1.0}
    cells = SHORTCUT_CODES[:, ::2, ::2]
    # each 2x2 block is constant, so upsampling the 3x3 cells reproduces the code
    assert np.array_equal(np.kron(cells, np.ones((2, 2))), SHORTCUT_CODES)
    assert len({tuple(c.ravel()) for c in cells}) == N_CLASSES


# -- determinism, shapes and balance -------------------------------------------------------------

def test_same_seed_gives_identical_arrays_and_different_seed_differs():
    a = make_synthetic_task(3, **SMALL)
    b = make_synthetic_task(3, **SMALL)
    c = make_synthetic_task(4, **SMALL)
    for split in ("train", "val", "test"):
        assert np.array_equal(a[split][0], b[split][0])
        assert np.array_equal(a[split][1], b[split][1])
        assert not np.array_equal(a[split][0], c[split][0])


def test_shapes_and_dtypes():
    task = make_synthetic_task(0, n_train=30, n_val=10, n_test=20, image_size=32)
    assert set(task) == {"train", "val", "test"}
    for split, n in (("train", 30), ("val", 10), ("test", 20)):
        images, labels = task[split]
        assert images.shape == (n, 3, 32, 32)
        assert images.dtype == np.uint8
        assert labels.shape == (n,)
        assert labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < N_CLASSES
    assert len(CLASS_NAMES) == N_CLASSES


def test_image_size_parameter_is_respected():
    images, _ = make_synthetic_task(0, n_train=10, n_val=10, n_test=10, image_size=24)["train"]
    assert images.shape == (10, 3, 24, 24)


@pytest.mark.parametrize("n", [50, 23])
def test_classes_balanced_within_each_split(n):
    task = make_synthetic_task(1, n_train=n, n_val=n, n_test=n)
    for split in ("train", "val", "test"):
        counts = np.bincount(task[split][1], minlength=N_CLASSES)
        assert counts.sum() == n
        assert counts.max() - counts.min() <= 1
        if n % N_CLASSES == 0:
            assert np.all(counts == n // N_CLASSES)


def test_labels_are_shuffled_not_sorted():
    labels = make_synthetic_task(0, n_train=100, n_val=10, n_test=10)["train"][1]
    assert not np.array_equal(labels, np.arange(100) % N_CLASSES)
    assert not np.all(np.diff(labels) >= 0)


def test_changing_n_test_does_not_change_train_or_val():
    a = make_synthetic_task(5, n_train=30, n_val=20, n_test=10)
    b = make_synthetic_task(5, n_train=30, n_val=20, n_test=50)
    for split in ("train", "val"):
        assert np.array_equal(a[split][0], b[split][0])
        assert np.array_equal(a[split][1], b[split][1])
    assert b["test"][0].shape[0] == 50


def test_images_are_not_trivial():
    images, labels = make_synthetic_task(0, n_train=40, n_val=10, n_test=10)["train"]
    # every image has contrast, and images differ from one another
    assert np.all(images.reshape(len(images), -1).std(axis=1) > 5)
    assert len({im.tobytes() for im in images}) == len(images)


# -- the shortcut code ---------------------------------------------------------------------------

def test_shortcut_code_identifies_the_label_when_probability_is_one():
    images, labels = make_synthetic_task(0, n_train=200, n_val=10, n_test=10,
                                         shortcut_probability=1.0)["train"]
    assert _code_match_rate(images, labels) > 0.95


def test_shortcut_code_at_default_probability_matches_about_ninety_percent():
    images, labels = make_synthetic_task(0, n_train=300, n_val=10, n_test=10,
                                         shortcut_probability=0.9)["train"]
    # expected 0.9 + 0.1 * 1/10 = 0.91 (a random code is right one time in ten)
    assert 0.82 < _code_match_rate(images, labels) < 0.97


def test_no_shortcut_when_amplitude_is_zero():
    images, labels = make_synthetic_task(0, n_train=300, n_val=10, n_test=10,
                                         shortcut_amplitude=0.0, shortcut_probability=1.0)["train"]
    # chance is 1/10
    assert _code_match_rate(images, labels) < 0.25


def test_no_shortcut_when_probability_is_zero():
    images, labels = make_synthetic_task(1, n_train=300, n_val=10, n_test=10,
                                         shortcut_probability=0.0)["train"]
    assert _code_match_rate(images, labels) < 0.25


# -- helpers -------------------------------------------------------------------------------------

def test_to_uint8_rounds_and_clips():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0, 2.0], dtype=np.float32)
    out = to_uint8(x)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 0, 1, 128, 255, 255]


def test_to_grey_uses_itu601_weights():
    rgb = np.zeros((2, 3, 2, 2), dtype=np.float32)
    rgb[0, 0] = 1.0          # pure red
    rgb[1] = 1.0             # white
    grey = to_grey(rgb)
    assert grey.shape == (2, 2, 2)
    np.testing.assert_allclose(grey[0], 0.299, rtol=1e-6)
    np.testing.assert_allclose(grey[1], 1.0, rtol=1e-6)


# -- stimulus images -----------------------------------------------------------------------------

def test_make_stimulus_images_shape_dtype_and_determinism():
    a = make_stimulus_images(0, 12, image_size=32)
    b = make_stimulus_images(0, 12, image_size=32)
    c = make_stimulus_images(1, 12, image_size=32)
    assert a.shape == (12, 32, 32)
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a.reshape(12, -1).std(axis=1) > 1)


def test_stimulus_images_differ_from_the_task_images_of_the_same_seed():
    stim = make_stimulus_images(0, 10).astype(np.float32)
    train = make_synthetic_task(0, n_train=10, n_val=10, n_test=10)["train"][0]
    grey_train = np.rint(to_grey(train.astype(np.float32) / 255.0) * 255.0)
    assert not np.allclose(stim, grey_train, atol=2)
