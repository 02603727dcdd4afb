"""Gaussian-noise evaluation (neurobias.robustness.noise): level 0 is clean accuracy, the noise is seeded
and clipped, models scored on one draw get their own numbers whatever the scoring batch."""

import torch
from torch import nn

from neurobias.robustness.noise import add_gaussian_noise, gaussian_noise_accuracies, gaussian_noise_accuracy
from test_evaluation_sharing import PixelVote, uint8_images


class MeanBrightness(nn.Module):
    """Class 1 if the mean pixel is above 0.5: noise-robust by averaging, a known answer."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1)


class CornerPixel(nn.Module):
    """Reads one pixel: fragile under noise."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([0.5 - p, p - 0.5], dim=1)


def images():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (400,), generator=g)
    levels = torch.where(labels == 1, 0.7, 0.3)
    x = (levels[:, None, None, None].expand(-1, 3, 8, 8) * 255).round().to(torch.uint8)
    return x, labels


def test_level_zero_is_clean_accuracy_and_noise_hurts_a_fragile_model():
    x, y = images()
    robust = gaussian_noise_accuracy(MeanBrightness(), x, y, [0.0, 0.5], seed=0, progress=False)
    fragile = gaussian_noise_accuracy(CornerPixel(), x, y, [0.0, 0.5], seed=0, progress=False)
    assert robust[0]["accuracy"] == fragile[0]["accuracy"] == 1.0
    assert robust[1]["accuracy"] > 0.95           # averages 192 noisy values
    assert fragile[1]["accuracy"] < 0.85          # one noisy pixel, SNR 0.4
    assert robust[1]["n"] == 400


def test_noise_is_seeded_and_clipped():
    x = torch.full((2, 3, 4, 4), 0.5)
    a = add_gaussian_noise(x.clone(), 2.0, torch.Generator().manual_seed(1))
    b = add_gaussian_noise(x.clone(), 2.0, torch.Generator().manual_seed(1))
    c = add_gaussian_noise(x.clone(), 2.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and ((a == 0) | (a == 1)).any()


def test_every_model_sees_the_same_noisy_images():
    x, y = images()
    r1 = gaussian_noise_accuracy(CornerPixel(), x, y, [0.3], seed=5, progress=False)
    r2 = gaussian_noise_accuracy(CornerPixel(), x, y, [0.3], seed=5, progress=False)
    r3 = gaussian_noise_accuracy(CornerPixel(), x, y, [0.3], seed=6, progress=False)
    assert r1 == r2 and r1 != r3


class SecondPixel(nn.Module):
    """Reads another pixel: fragile, but differently from CornerPixel."""

    def forward(self, x):
        p = x[:, 1, 3, 5]
        return torch.stack([0.5 - p, p - 0.5], dim=1)


def test_several_models_scored_on_one_draw_match_one_model_at_a_time():
    # one job scores all seeds of an arm on each noisy batch: each model's numbers must be those
    # it gets alone (same draws), with batches that split the images unevenly
    x, y = images()
    models = [CornerPixel(), SecondPixel(), MeanBrightness()]
    together = gaussian_noise_accuracies(models, x, y, [0.0, 0.3, 0.6], seed=4, batch_size=150, progress=False)
    alone = [gaussian_noise_accuracy(m, x, y, [0.0, 0.3, 0.6], seed=4, batch_size=150, progress=False) for m in models]
    assert together == alone
    assert together[0] != together[1]  # the models differ, so a mix-up would show


def test_the_scoring_batch_changes_no_gaussian_noise_result():
    # the noise is drawn per 150-image batch; scoring 1, 7 or all of them at a time (uneven splits
    # included) must give the numbers of one pass per drawn batch
    x, y = uint8_images(400)
    models = [PixelVote(0, 0), PixelVote(5, 9)]
    per_draw = gaussian_noise_accuracies(models, x, y, [0.0, 0.3], seed=2, batch_size=150, progress=False,
                                         score_batch_size=150)
    for score_batch_size in (1, 7, 1000):
        assert gaussian_noise_accuracies(models, x, y, [0.0, 0.3], seed=2, batch_size=150, progress=False,
                                         score_batch_size=score_batch_size) == per_draw
    assert per_draw[0] != per_draw[1]  # the models differ, so a mix-up would show
