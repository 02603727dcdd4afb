"""Evaluations that score several models on images made once: each model's numbers must be bit for
bit those it gets scored alone, image by image. Here the brain_likeness job, whose deterministic
models share the manipulated images, and a network's logits, which do not depend on the other images
of the batch; Gaussian noise and the Geirhos manipulations: tests/test_noise.py and
tests/test_manipulations.py (which use the helpers below)."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neurobias import jobs
from neurobias.data.prepared import save_split
from neurobias.models import build_classifier, inference_layout, to_inference_layout
from neurobias.neural.recording import Recording
from neurobias.predictivity import layer_explained_variance
from neurobias.robustness.manipulations import manipulation_accuracy, to_grey
from neurobias.robustness.pgd import is_stochastic
from neurobias.models.io import load_classifier, save_classifier
from neurobias.train import evaluate

N_CLASSES = 3


class PixelVote(nn.Module):
    """Logits from a few pixels: its answers follow the noise, so they reveal which images it saw."""

    def __init__(self, row: int, col: int):
        super().__init__()
        self.row, self.col = row, col

    def forward(self, x):
        p = to_grey(x)[:, 0, self.row, self.col]
        return torch.stack([0.5 - p, p - 0.5, torch.zeros_like(p)], dim=1)


def uint8_images(n: int, seed: int = 0, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 3, size, size, generator=g) * 255).round().to(torch.uint8)
    return x, torch.randint(0, N_CLASSES, (n,), generator=g)


def test_a_resnet_gives_the_same_logits_in_small_batches():
    # what the smaller scoring batches rely on for byte-identical tables: a conv net's logits for an
    # image do not depend on the other images of its batch (CPU, fp32, channels_last as evaluated)
    torch.manual_seed(0)
    model = to_inference_layout([build_classifier("resnet18", N_CLASSES, 3, [0.5] * 3, [0.25] * 3, width=8)])[0]
    x = inference_layout(torch.rand(200, 3, 32, 32))
    with torch.no_grad():
        whole = model(x)
        assert torch.equal(torch.cat([model(x[j:j + 64]) for j in range(0, 200, 64)]), whole)


SPEC = {"greyscale": [0, 1], "contrast": [1.0, 0.5], "rotation": [0, 90], "uniform_noise": [0.0, 0.35]}


# -- the brain_likeness job ------------------------------------------------------------------------
BRAIN_CFG = {"explained_variance": {"n_components": 2, "n_folds": 2, "max_images": None, "max_features": 20,
                                    "pool_to": 2, "seed": 0},
             "manipulations": {"n_images": 30, "seed": 0, "levels": SPEC, "phase_noise_method": "authors"}}
LAYERS = ["stem", "layer1"]


@pytest.fixture
def arm_inputs(tmp_path):
    """Two seeds' model.pt (noisy VOne front end or not), a test split and a recording."""
    def write(vone):
        torch.manual_seed(0)
        cfg = {"architecture": "resnet18", "width": 4, "vone": vone}
        paths = []
        for seed in (0, 1):
            model = build_classifier("resnet18", N_CLASSES, 3, [0.5] * 3, [0.25] * 3, width=4, vone=vone)
            paths.append(tmp_path / f"{bool(vone)}_seed{seed}.pt")
            save_classifier(model, cfg, N_CLASSES, 3, paths[-1])
        return [str(p) for p in paths]

    x, y = uint8_images(250, seed=1, size=32)  # more than one 100-image batch
    save_split(tmp_path / "test.pt", x.numpy(), y.numpy(), ["a", "b", "c"])
    rng = np.random.default_rng(0)
    responses = rng.poisson(3.0, (40, 4, 6)).astype(np.float32)
    Recording(rng.integers(0, 256, (40, 32, 32), dtype=np.uint8), responses, np.arange(40),
              np.array(["train"] * 30 + ["test"] * 10)).save(tmp_path / "recording.npz")
    return {"deterministic": write(None), "stochastic": write({"simple_channels": 4, "complex_channels": 4,
                                                                 "bottleneck": 4}),
            "test_split": str(tmp_path / "test.pt"), "recording": str(tmp_path / "recording.npz")}


def one_model_at_a_time(models: list, test_split, recording) -> pd.DataFrame:
    """The job's table as it was made before the models shared the manipulated images: every model
    in turn, all its evaluations, manipulations alone, the clean accuracy in 512-image batches."""
    from neurobias.data import load_split
    images, labels, _ = load_split(test_split)
    rec = Recording.load(recording)
    ev, man = BRAIN_CFG["explained_variance"], BRAIN_CFG["manipulations"]
    sub_x, sub_y = jobs.evaluation._seeded_subset(images, labels, man["n_images"], man["seed"])
    rows = []
    for seed, path in enumerate(models):
        model = to_inference_layout([load_classifier(path)])[0]  # as every evaluation job's
        meta = {"study": "s", "arm": "a", "seed": seed}
        rows.append({**meta, "evaluation": "clean", "condition": "test", "level": np.nan, "metric": "accuracy",
                     "value": evaluate(model, images, labels, 512, "cpu")[1]})
        frame = layer_explained_variance(model, rec, LAYERS, seed=ev["seed"], n_components=ev["n_components"],
                                         n_folds=ev["n_folds"], max_images=None, max_features=ev["max_features"],
                                         pool_to=ev["pool_to"], image_size=32, channels=3)
        rows += [{**meta, "evaluation": "v1_explained_variance", "condition": "rec", "level": r.layer,
                  "metric": metric, "value": float(getattr(r, metric))}
                 for r in frame.itertuples() for metric in ("median_ev", "median_r", "n_neurons_used")]
        records = manipulation_accuracy(model, sub_x, sub_y, man["levels"], seed=man["seed"], progress=False)
        rows += [{**meta, "evaluation": "manipulations", "condition": r["manipulation"], "level": r["level"],
                  "metric": metric, "value": float(r[metric])}
                 for r in records for metric in ("accuracy", "entropy_bits")]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kind", ["deterministic", "stochastic"])
def test_brain_likeness_table_is_that_of_one_model_at_a_time(arm_inputs, tmp_path, kind):
    # deterministic models share the manipulated images (scored after the loop); stochastic ones
    # are scored alone, in seed order, so that their noise draws are those of one model at a time
    models = arm_inputs[kind]
    assert is_stochastic(load_classifier(models[0])) == (kind == "stochastic")
    torch.manual_seed(7)
    got = jobs.brain_likeness(models=models, test_split=arm_inputs["test_split"],
                              recordings=[arm_inputs["recording"]], table=tmp_path / "table.csv", study="s",
                              arm="a", seeds=[0, 1], recording_names=["rec"], layers=LAYERS,
                              brain_likeness_cfg=BRAIN_CFG, device="cpu", progress=False)
    torch.manual_seed(7)
    expected = one_model_at_a_time(models, arm_inputs["test_split"], arm_inputs["recording"])
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    if kind == "stochastic":  # the noise shows: a model's two passes over the same images differ
        torch.manual_seed(8)
        other = one_model_at_a_time(models, arm_inputs["test_split"], arm_inputs["recording"])
        assert not other.equals(expected)
