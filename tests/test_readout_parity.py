"""Parity of our Gaussian readout with the Sinz lab's (issue 31, item 3).

``tests/fixtures/parity/gaussian_readout.npz`` holds outputs computed once from the authors' code
(the JSON sidecar names repository, path, commit and class): the legacy ``Gaussian2d`` of
Safarani et al. 2021's MTL head (mlutils, imported by sinzlab/neural_cotraining) and
neuralpredictors' ``FullGaussian2d`` with ``gauss_type="isotropic"`` (the single-task V1 model's
readout), fed the same inputs and the same standard-normal draws as ours. Their training-mode
``sample_grid`` clamps the parameter ``mu`` into [-1, 1] in place before sampling, and
``Gaussian2d`` also clamps ``sigma`` to >= 0; the fixture's ``mu`` and ``sigma`` include values
outside those ranges. Evaluation mode is unchanged from before the issue.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

import neurobias.neural.v1_model as v1_model
from neurobias.neural.v1_model import GaussianReadout, V1PredictiveModel
from neurobias.regularisers.mtl import MTLRegulariser

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity"
ATOL = 1e-6
# fixture class -> (our readout's settings, the fixture's sigma)
CLASSES = {
    "gaussian2d": (dict(gauss_type="uncorrelated", clamp_mu=True, clamp_sigma=True), "sigma_uncorrelated"),
    "fullgaussian2d_isotropic": (dict(gauss_type="isotropic", clamp_mu=True, clamp_sigma=False), "sigma_isotropic"),
}


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "gaussian_readout.npz"))


@pytest.fixture
def fixed_draws(monkeypatch):
    """Hand the readout's training-time N(0, 1) draws from a list, in order."""
    queue: list[np.ndarray] = []

    def normal(shape, *, device, dtype, generator=None):
        eps = queue.pop(0)
        assert tuple(shape) == eps.shape
        return torch.as_tensor(eps, dtype=dtype, device=device)

    monkeypatch.setattr(v1_model, "normal", normal)
    return queue


def ours(ref, kind, readout=None) -> GaussianReadout:
    settings, sigma = CLASSES[kind]
    n_neurons, channels = ref["weight"].shape
    readout = readout if readout is not None else GaussianReadout(channels, n_neurons, **settings)
    with torch.no_grad():
        readout.mu.copy_(torch.from_numpy(ref["mu"]))
        readout.sigma.copy_(torch.from_numpy(ref[sigma]))
        readout.weight.copy_(torch.from_numpy(ref["weight"]))
        readout.bias.copy_(torch.from_numpy(ref["bias"]))
    return readout


def close(actual, expected, what):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert actual.shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL, err_msg=what)


def test_sidecar_names_the_reference_code():
    meta = json.loads((FIXTURES / "gaussian_readout.json").read_text())
    assert meta["fixture"] == "gaussian_readout.npz"
    assert set(meta["references"]) == set(CLASSES)
    for entry in meta["references"].values():
        assert entry["repository"].startswith("sinzlab/") and entry["path"] and entry["class"]
        assert len(entry["commit"]) == 40
    assert (FIXTURES / "gaussian_readout.npz").stat().st_size < 100_000


def test_fixture_exercises_the_clamps(ref):
    assert (np.abs(ref["mu"]) > 1).any()
    assert (ref["sigma_uncorrelated"] < 0).any() and (ref["sigma_isotropic"] < 0).any()


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_training_forward_and_gradients_match_the_authors_readout(ref, kind, fixed_draws):
    readout = ours(ref, kind).train()
    fixed_draws.append(ref["draws"][0])
    out = readout(torch.from_numpy(ref["x"]))
    close(out, ref[f"{kind}/train_out"], f"{kind}: training-mode output")
    (out * torch.from_numpy(ref["cotangent"])).sum().backward()
    for name in ("mu", "sigma", "weight", "bias"):
        close(getattr(readout, name).grad, ref[f"{kind}/train_grad_{name}"], f"{kind}: gradient of {name}")
        # their sample_grid clamps the parameters themselves, in place
        close(getattr(readout, name), ref[f"{kind}/after_forward_{name}"], f"{kind}: {name} after the forward")


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_a_short_sgd_run_follows_the_authors_readout(ref, kind, fixed_draws):
    readout = ours(ref, kind).train()
    optimiser = torch.optim.SGD(readout.parameters(), lr=float(ref["lr"]))
    x = torch.from_numpy(ref["x"])
    for step, eps in enumerate(ref["draws"]):
        fixed_draws.append(eps)
        out = readout(x)
        close(out, ref[f"{kind}/sgd_train_out"][step], f"{kind}: output at SGD step {step}")
        loss = ((out - torch.from_numpy(ref["target"][step])) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for name in ("mu", "sigma", "weight", "bias"):
        close(getattr(readout, name), ref[f"{kind}/sgd_final_{name}"], f"{kind}: {name} after SGD")


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_evaluation_mode_is_unchanged(ref, kind):
    readout = ours(ref, kind).eval()
    x = torch.from_numpy(ref["x"])
    with torch.no_grad():
        out = readout(x)
    close(out, ref[f"{kind}/eval_out"], f"{kind}: evaluation-mode output")
    # as before issue 31: the feature map read at clamp(mu) ...
    grid = torch.from_numpy(ref["mu"]).clamp(-1, 1).unsqueeze(0).expand(x.shape[0], -1, -1).unsqueeze(2)
    before = (F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
              .squeeze(-1).transpose(1, 2) * torch.from_numpy(ref["weight"])).sum(-1) + torch.from_numpy(ref["bias"])
    torch.testing.assert_close(out, before, rtol=0, atol=0)
    # ... and the parameters left as they are
    assert np.array_equal(readout.mu.detach().numpy(), ref["mu"])
    assert np.array_equal(readout.sigma.detach().numpy(), ref[CLASSES[kind][1]])


def test_the_mtl_head_is_gaussian2d_and_the_v1_model_fullgaussian2d(ref, fixed_draws):
    reg = MTLRegulariser(np.ones((10, 6), np.float32), np.arange(8), "conv3_1", 3, seed=1)
    head = reg.readout
    assert (head.gauss_type, head.clamp_mu, head.clamp_sigma) == ("uncorrelated", True, True)
    assert head.sigma.shape == (6, 2)
    # widths start uniform in [0, init_sigma_range], each axis its own (Gaussian2d.initialize)
    sig = head.sigma.detach()
    assert float(sig.min()) >= 0 and float(sig.max()) <= 0.6 and not torch.equal(sig[:, 0], sig[:, 1])
    fixed_draws.append(ref["draws"][0])
    out = ours(ref, "gaussian2d", head).train()(torch.from_numpy(ref["x"]))
    close(out, ref["gaussian2d/train_out"], "MTL head: training-mode output")

    v1 = V1PredictiveModel(n_neurons=6, image_size=16, core_channels=3, core_layers=1).readout
    assert (v1.gauss_type, v1.clamp_mu, v1.clamp_sigma) == ("isotropic", True, False)
    assert v1.sigma.shape == (6, 1)


def test_old_sampling_is_an_option(ref, fixed_draws):
    """``clamp_mu=False``: only the sampled position is clamped, mu may leave [-1, 1] (before issue 31)."""
    readout = ours(ref, "fullgaussian2d_isotropic",
                   GaussianReadout(3, 6, gauss_type="isotropic", clamp_mu=False)).train()
    fixed_draws.append(ref["draws"][0])
    x = torch.from_numpy(ref["x"])
    out = readout(x)
    assert np.array_equal(readout.mu.detach().numpy(), ref["mu"])
    pos = (torch.from_numpy(ref["mu"]) + torch.from_numpy(ref["sigma_isotropic"]) * torch.from_numpy(ref["draws"][0]))
    grid = pos.clamp(-1, 1).unsqueeze(2)
    expected = (F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
                .squeeze(-1).transpose(1, 2) * torch.from_numpy(ref["weight"])).sum(-1) + torch.from_numpy(ref["bias"])
    torch.testing.assert_close(out, expected)
    assert float((out.detach() - torch.from_numpy(ref["fullgaussian2d_isotropic/train_out"])).abs().max()) > 1e-3


def test_in_place_clamps_work_under_the_stacked_engines_vmap(ref, fixed_draws):
    """The stacked engine (neurobias.stacked) computes each run's gradients with
    vmap(grad(functional_call)): the clamps must run there without vmap's fallback warning, clamp
    the stacked parameters and give each run the gradients it gets alone."""
    x = torch.from_numpy(ref["x"])
    readout = ours(ref, "gaussian2d").train()
    initial = {k: torch.stack([p.detach(), p.detach() * 0.5]) for k, p in readout.named_parameters()}
    stacked = {k: v.clone() for k, v in initial.items()}

    def loss(p):
        return functional_call(readout, p, (x,)).square().mean()

    fixed_draws.append(ref["draws"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grads, _ = vmap(grad_and_value(loss), randomness="error")(stacked)
    assert float(stacked["mu"].abs().max()) <= 1 and float(stacked["sigma"].min()) >= 0
    for i in range(2):
        alone = ours(ref, "gaussian2d").train()
        with torch.no_grad():
            for k, p in alone.named_parameters():
                p.copy_(initial[k][i])
        fixed_draws.append(ref["draws"][0])
        loss(dict(alone.named_parameters())).backward()
        for k, p in alone.named_parameters():
            torch.testing.assert_close(grads[k][i], p.grad, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(stacked[k][i], p.detach(), rtol=0, atol=0)
