"""Tests for neurobias.robustness.label_noise: label corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurobias.robustness.label_noise import corrupt_labels


N_LABELS, N_CLASSES = 1000, 10
LABELS = torch.as_tensor(np.random.default_rng(1).integers(0, N_CLASSES, N_LABELS), dtype=torch.int64)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_exactly_round_f_n_labels_change_to_another_class(fraction):
    before = LABELS.clone()
    y, mask = corrupt_labels(LABELS, fraction, N_CLASSES, seed=7)
    assert torch.equal(LABELS, before)  # input untouched
    assert y.dtype == LABELS.dtype and y.shape == LABELS.shape
    changed = y != LABELS
    assert int(changed.sum()) == round(fraction * N_LABELS)
    assert torch.equal(changed, mask)
    assert ((y >= 0) & (y < N_CLASSES)).all()
    assert torch.equal(y[~changed], LABELS[~changed])


def test_two_classes_corrupted_labels_flip():
    labels = torch.tensor([0, 1] * 10)
    y, mask = corrupt_labels(labels, 1.0, 2, seed=0)
    assert mask.all() and torch.equal(y, 1 - labels)
    y, mask = corrupt_labels(labels, 0.3, 2, seed=0)
    assert int(mask.sum()) == 6 and torch.equal(y[mask], 1 - labels[mask])


def test_corruption_seeded_and_nested():
    a, ma = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=7)
    b, mb = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=7)
    c, mc = corrupt_labels(LABELS, 0.3, N_CLASSES, seed=8)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(ma, mc)
    _, m5 = corrupt_labels(LABELS, 0.5, N_CLASSES, seed=7)
    assert bool((ma & ~m5).sum() == 0)  # the 0.3 set is inside the 0.5 set
    assert int(m5.sum()) > int(ma.sum())
    # and the corrupted values agree where both corrupt
    y5, _ = corrupt_labels(LABELS, 0.5, N_CLASSES, seed=7)
    assert torch.equal(y5[ma], a[ma])


@pytest.mark.parametrize("fraction", [-0.1, 1.1])
def test_fraction_outside_unit_interval_raises(fraction):
    with pytest.raises(ValueError, match="fraction"):
        corrupt_labels(LABELS, fraction, N_CLASSES, seed=0)
