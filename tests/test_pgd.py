"""Fixed-budget PGD white-box accuracy (Foolbox LinfPGD / L2PGD / L1PGD) and its EOT wrapper.

The model is a tiny CNN trained for a few hundred full-batch steps on an easy synthetic
problem: two classes of 3x8x8 images that differ only in mean brightness (class 0 in
[0.1, 0.4], class 1 in [0.6, 0.9], plus pixel noise), so clean accuracy is ~1 and a uniform
brightness shift of 0.1-0.4 (L-infinity 0.5 certainly) flips every image.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurobias.robustness.pgd import (
    RECORD_KEYS,
    ExpectationOverNoise,
    is_stochastic,
    pgd_accuracy,
    pgd_adversarials,
    white_box_records,
)
from neurobias.stats import TIDY_COLUMNS, summarise

EPS = {"linf": 0.03, "l2": 0.3, "l1": 3.0}
SWEEP = {"linf": [0.0, 0.05, 0.1, 0.2, 0.5],
         "l2": [0.0, 0.5, 1.5, 3.0, 8.0],
         "l1": [0.0, 10.0, 30.0, 80.0, 200.0]}


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x - 0.5)).mean((2, 3)))


class Noisy(nn.Module):
    """Adds fresh Gaussian pixel noise on every forward pass, in eval mode too."""

    def __init__(self, model, sigma=0.2):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x + self.sigma * torch.randn_like(x))


def brightness_problem(n=128, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    level = torch.where(y == 1, 0.6, 0.1) + 0.3 * torch.rand(n, generator=g)
    x = level[:, None, None, None] + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()               # module fixtures run before conftest's
    torch.set_num_threads(1)                         # per-test single-thread fixture
    torch.manual_seed(0)
    images, labels = brightness_problem()
    model = SmallNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = images.float() / 255
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        opt.step()
    model.eval()
    torch.set_num_threads(threads)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == labels).float().mean())
    assert clean >= 0.98, clean
    return model, images, labels, clean


def norm_of(delta, norm):
    d = delta.reshape(len(delta), -1).double()
    return {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "l1": d.abs().sum(1)}[norm]


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_stays_within_budget_and_box(trained, norm):
    model, images, labels, _ = trained
    x, y = images[:64].float() / 255, labels[:64]
    eps = EPS[norm]
    x_adv = pgd_adversarials(model, x, y, norm=norm, epsilon=eps, steps=20, seed=0)
    size = norm_of(x_adv - x, norm)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert float(size.max()) <= eps * (1 + 1e-6) + 1e-5
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    # the attack used its budget and raised the loss of the true label
    assert float(size.median()) >= 0.5 * eps
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    assert torch.equal(pgd_adversarials(model, x, y, norm=norm, epsilon=0.0), x)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_accuracy_falls_monotonically_with_budget(trained, norm):
    model, images, labels, clean = trained
    records = pgd_accuracy(model, images, labels, norm=norm, epsilons=SWEEP[norm], steps=20,
                           rel_stepsize=2.5 / 20, n_images=None, seed=0, batch_size=50)
    assert [r["epsilon"] for r in records] == SWEEP[norm]
    assert all(set(r) == set(RECORD_KEYS) and r["norm"] == norm and r["n"] == len(images) for r in records)
    acc = [r["accuracy"] for r in records]
    assert acc[0] == pytest.approx(clean, abs=1e-12)
    assert all(b <= a for a, b in zip(acc, acc[1:])), acc
    assert acc[-1] <= 0.05, acc
    assert min(acc[1:-1]) < clean - 0.1, acc          # the middle budgets bite too


def test_rel_stepsize_is_used(trained):
    # 20 steps of Foolbox's default L-infinity step (eps/30) walk only 2/3 eps: on this problem
    # eps = 0.5 leaves ~1/4 of the images correct, 2.5/steps reaches all of them.
    model, images, labels, _ = trained
    kwargs = dict(norm="linf", epsilons=[0.5], steps=20, n_images=None, seed=0, batch_size=50)
    default = pgd_accuracy(model, images, labels, **kwargs)[0]["accuracy"]
    madry = pgd_accuracy(model, images, labels, rel_stepsize=2.5 / 20, **kwargs)[0]["accuracy"]
    assert madry <= 0.05 < default


def test_reproducible_and_leaves_rng_alone(trained):
    model, images, labels, _ = trained
    kwargs = dict(norm="l2", epsilons=[0.5, 1.5], steps=10, n_images=50, seed=3, batch_size=20)
    state = torch.get_rng_state()
    a = pgd_accuracy(model, images, labels, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)                              # a different global state changes nothing
    b = pgd_accuracy(model, images, labels, **kwargs)
    assert a == b
    assert all(r["n"] == 50 for r in a)
    # one budget evaluated alone gives the same record as inside a list
    assert pgd_accuracy(model, images, labels, **{**kwargs, "epsilons": [1.5]}) == a[1:]


def test_is_stochastic(trained):
    model, images, _, _ = trained
    x = images[:4].float() / 255
    noisy = Noisy(model)
    state = torch.get_rng_state()
    assert is_stochastic(noisy, x)
    assert is_stochastic(noisy)                       # default probe: 2 x 3 x 32 x 32
    assert not is_stochastic(model, x)
    assert not is_stochastic(model)
    assert torch.equal(torch.get_rng_state(), state)
    noisy.train()
    is_stochastic(noisy, x)
    assert noisy.training                             # mode restored


def test_eot_wrapper_is_the_mean_of_passes(trained):
    model, _, _, _ = trained
    # near the class boundary (brightness 0.5), where the noise changes the prediction
    x = 0.45 + 0.1 * torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy = Noisy(model)
    wrapper = ExpectationOverNoise(noisy, 8)
    torch.manual_seed(0)
    out = wrapper(x)
    torch.manual_seed(0)
    passes = torch.stack([torch.softmax(noisy(x), 1) for _ in range(8)])
    torch.testing.assert_close(out.exp(), passes.mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out.exp(), passes[0], atol=1e-3)       # really averaged
    # gradients flow to the input through all passes
    xg = x.clone().requires_grad_(True)
    wrapper(xg)[:, 0].sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0


def test_eot_on_deterministic_model_changes_nothing(trained):
    model, images, labels, _ = trained
    # log(mean of 3 identical softmaxes) has the gradient of the plain logits: same attack
    kwargs = dict(norm="linf", epsilons=[0.0, 0.2, 0.3], steps=10, rel_stepsize=0.25, n_images=64, seed=1)
    one = pgd_accuracy(model, images, labels, eot_samples=1, **kwargs)
    three = pgd_accuracy(model, images, labels, eot_samples=3, **kwargs)
    assert one[-1]["accuracy"] < 0.8                                  # the attack bites
    for a, b in zip(one, three):
        assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1.5 / 64)


def test_stochastic_model_accuracy_is_averaged_over_passes(trained):
    model, images, labels, _ = trained
    noisy = Noisy(model, sigma=0.3)
    kwargs = dict(norm="linf", epsilons=[0.0, 0.3], steps=5, rel_stepsize=0.5, n_images=40, seed=0,
                  eot_samples=4)
    a = pgd_accuracy(noisy, images, labels, **kwargs)
    assert a == pgd_accuracy(noisy, images, labels, **kwargs)
    for r in a:
        hits = r["accuracy"] * 40 * 4
        assert hits == pytest.approx(round(hits), abs=1e-9)          # a mean over 4 passes x 40 images
    assert a[1]["accuracy"] < a[0]["accuracy"]


def test_white_box_records():
    records = [{"norm": n, "epsilon": e, "accuracy": a, "n": 100}
               for n, e, a in [("l2", 0.6, 0.2), ("linf", 0.0, 0.9), ("linf", 1 / 255, 0.3),
                               ("linf", 1 / 1020, 0.6), ("l2", 0.15, 0.5), ("l1", 40.0, 0.7),
                               ("l1", 160.0, 0.4)]]
    rows = white_box_records(records, study="s", arm="v1", seed=2)
    df = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    assert all(list(r) == list(TIDY_COLUMNS) for r in rows)
    assert set(df["evaluation"]) == {"white_box"} and set(df["study"]) == {"s"}
    assert set(df["arm"]) == {"v1"} and set(df["seed"]) == {2}
    per = df[df["metric"] == "accuracy"]
    assert len(per) == 7
    assert list(per["condition"]) == ["linf"] * 3 + ["l2"] * 2 + ["l1"] * 2
    assert list(per["level"])[:3] == [0.0, 1 / 1020, 1 / 255]
    means = df[df["metric"] == "mean_accuracy"].set_index("condition")
    assert means["level"].isna().all()
    assert means.loc["linf", "value"] == pytest.approx(0.45)          # eps 0 left out
    assert means.loc["l2", "value"] == pytest.approx(0.35)
    assert means.loc["l1", "value"] == pytest.approx(0.55)
    overall = df[df["metric"] == "white_box_accuracy"]
    assert len(overall) == 1 and overall["condition"].item() == "all" and math.isnan(overall["level"].item())
    attacked = [r["accuracy"] for r in records if r["epsilon"] > 0]
    assert overall["value"].item() == pytest.approx(np.mean(attacked))
    assert overall["value"].item() == pytest.approx(np.mean(means["value"]))
    # NaN levels survive the statistics' grouping
    s = summarise(pd.concat([df, df.assign(seed=3)]))
    assert len(s) == len(df) and (s["n"] == 2).all()


def test_invalid_arguments(trained):
    model, images, labels, _ = trained
    with pytest.raises(ValueError, match="norm"):
        pgd_accuracy(model, images, labels, norm="l0", epsilons=[0.1])
    with pytest.raises(ValueError, match="epsilons"):
        pgd_accuracy(model, images, labels, norm="l2", epsilons=[-0.1])
    with pytest.raises(ValueError, match="uint8"):
        pgd_accuracy(model, images.float(), labels, norm="l2", epsilons=[0.1])
    with pytest.raises(ValueError, match="missing"):
        white_box_records([{"norm": "l2", "epsilon": 0.1}], study="s", arm="a", seed=0)
