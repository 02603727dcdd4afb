"""Issue 17, "faithful methods": each regulariser as the authors' code and papers have it, with the
old behaviour kept where it is an option. Here, what spans several modules or checks the shipped
presets:

- the Safarani preset trains its MTL arms on raw targets (``target_scale: raw``);
- the stimulus pass updates BatchNorm's running statistics (``neural_batchnorm: update``;
  ``freeze`` the old behaviour), for every regulariser with a stimulus pass;
- the oracle's Euclidean consistency from the config to the regulariser, and the preset using it
  with the MTL-oracle readout's 10 epochs;
- Li's preset: 64 stimulus images per step;
- the Dapello budgets of the default config say what they are.

Each module's own part: tests/test_mtl.py (raw and per-neuron-SD targets), test_oracle.py (the
consistency losses), test_neural_similarity.py (Li's network similarity z-scores every unit, as the
neurons are for S_neural) and test_config.py (the schema's defaults and errors).
"""

import copy
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from test_safarani import task  # noqa: F401  (fixture: a grey synthetic task and simulated V1 responses)
from neurobias.config import ConfigError, validate_config
from neurobias.regularisers.oracle import OracleTraining
from neurobias.models.io import stimuli_as_inputs
from neurobias.train import (EpochStep, RunData, TrainingConfig, batchnorm_layers, build_model,
                             build_run_regulariser, epoch_generator)

STUDIES = ROOT / "studies"


def preset(name: str) -> dict:
    return validate_config(yaml.safe_load((STUDIES / name).read_text()))


def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def tiny_safarani() -> dict:
    return yaml.safe_load((ROOT / "tests" / "configs" / "safarani_tiny.yaml").read_text())


# -- 1. MTL targets: raw in the preset -------------------------------------------------------------
def test_safarani_preset_trains_on_raw_targets():
    study = preset("safarani2021.yaml")["studies"]["safarani2021"]
    mtl = {name: arm for name, arm in study["arms"].items() if arm["regulariser"] == "mtl"}
    assert len(mtl) > 3 and {arm["target_scale"] for arm in mtl.values()} == {"raw"}
    assert {arm["neural_batchnorm"] for arm in mtl.values()} == {"update"}


# -- 2. BatchNorm statistics in the stimulus pass --------------------------------------------------
@pytest.fixture(scope="module")
def bn_data(task):
    """test_safarani's grey task and simulated V1, with a similarity target from its responses."""
    train, val, stim, tiers, responses = task
    return train, val, stim, tiers, responses, np.corrcoef(responses).astype(np.float32)


ARMS = {
    "similarity": ({"regulariser": "similarity", "target": "model", "alpha": 1.0, "layers": ["layer1", "layer2"],
                    "stimulus_batch_size": 8}, "similarity", 0),
    "rsm": ({"regulariser": "rsm", "target": "rsm_v1", "r": 0.5, "layer": "layer2", "stimulus_batch_size": 8},
            "similarity", 1),  # alternate: the neural term on odd steps
    "mtl": ({"regulariser": "mtl", "target": "responses_model", "layer": "layer2", "stimulus_batch_size": 8},
            "responses", 0),
}


def bn_state_after_one_step(bn_data, arm: dict | None, target_kind: str, step: int):
    """BatchNorm running statistics of a ResNet-18 (width 4) after one training step of ``arm``
    (None: cross-entropy alone) from the same initial weights and the same generator."""
    train, val, stim, tiers, responses, similarity = bn_data
    target = None if arm is None else (similarity if target_kind == "similarity" else responses)
    data = RunData.prepare(train=train, val=val, test=None, stimuli=stim, stimulus_tiers=tiers, target=target,
                           diagnostic_target=similarity, superclass_of_class=None, responses=responses,
                           label_noise=None, seed=0)
    cfg = TrainingConfig(epochs=1, batch_size=16, precision="fp32", channels_last=False)
    model = build_model(data, {"architecture": "resnet18", "width": 4}, 0, "cpu")
    stim_x = stimuli_as_inputs(data.stimuli, data.channels, data.size)
    reg = None if arm is None else build_run_regulariser(arm, data, model, stim_x, {}, 0, "cpu")
    run = EpochStep(model, reg, data, stim_x, cfg, torch.device("cpu"), "fp32", torch.contiguous_format,
                    "term", progress=False)
    model.train()
    g = epoch_generator(0, 0)
    idx = torch.arange(16)
    _, _, _, _, active = run._step(0, step, idx, data.train_y[idx], g)
    assert active == (arm is not None)
    bns = batchnorm_layers(model)
    return ([m.running_mean.clone() for m in bns], [m.running_var.clone() for m in bns],
            [int(m.num_batches_tracked) for m in bns], reg)


@pytest.mark.parametrize("kind", sorted(ARMS))
def test_neural_batchnorm_update_moves_the_running_statistics_and_freeze_does_not(bn_data, kind):
    arm, target_kind, step = ARMS[kind]
    mean0, var0, tracked0, _ = bn_state_after_one_step(bn_data, None, target_kind, step)
    mean_u, var_u, tracked_u, reg_u = bn_state_after_one_step(bn_data, arm, target_kind, step)
    mean_f, var_f, tracked_f, reg_f = bn_state_after_one_step(bn_data, {**arm, "neural_batchnorm": "freeze"},
                                                              target_kind, step)
    assert reg_u.neural_batchnorm == "update" and reg_f.neural_batchnorm == "freeze"  # the default is update
    # freeze: exactly the statistics of the classification batch alone (as cross-entropy only)
    assert all(torch.equal(a, b) for a, b in zip(mean_f, mean0))
    assert all(torch.equal(a, b) for a, b in zip(var_f, var0))
    assert tracked_f == tracked0
    # update: the stimulus batch moved them too, in the layers it passed
    assert not torch.allclose(mean_u[0], mean0[0]) and not torch.allclose(var_u[0], var0[0])
    assert tracked_u[0] == tracked0[0] + 1


# -- 3. the oracle's Euclidean consistency, from the config --------------------------------------
def oracle(consistency: str) -> OracleTraining:
    return OracleTraining("conv3_1", pretrain_epochs=1, consistency=consistency)


def test_oracle_consistency_schema_takes_euclidean_and_names_a_bad_value():
    cfg = tiny_safarani()
    cfg["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] = "euclidean"
    assert validate_config(copy.deepcopy(cfg))["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] == "euclidean"
    cfg["studies"]["saf"]["arms"]["oracle"]["oracle"]["consistency"] = "l2"
    with pytest.raises(ConfigError, match=r"studies\.saf\.arms\.oracle\.oracle\.consistency"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="consistency"):
        oracle("l2")


def test_safarani_preset_says_and_does_euclidean_and_a_10_epoch_readout():
    study = preset("safarani2021.yaml")["studies"]["safarani2021"]
    assert study["arms"]["oracle"]["oracle"]["consistency"] == "euclidean"
    assert study["similarity"]["oracle_readout"]["epochs"] == 10
    header = (STUDIES / "safarani2021.yaml").read_text().split("\nextends:")[0]
    assert "Euclidean distance" in header and not re.search(r"squared[-\s#]*error consistency", header)


# -- 4. Li's preset: as many stimulus images as classification images --------------------------
def test_li_preset_sends_64_stimulus_images_per_step():
    config = preset("li2019.yaml")
    for name, study in config["studies"].items():
        sim = [arm for arm in study["arms"].values() if arm["regulariser"] == "similarity"]
        assert sim, name
        assert {arm["stimulus_batch_size"] for arm in sim} == {study["training"]["batch_size"]} == {64}
        assert {arm["neural_batchnorm"] for arm in sim} == {"update"}


# -- 5. Dapello budgets of the default config -----------------------------------------------------
def test_default_white_box_budgets_are_dapellos_larger_budgets_and_say_so():
    budgets = validate_config(demo_config())["brain_likeness"]["white_box"]["budgets"]
    # Dapello et al. on 224 px: small Linf 1/1020, L2 0.15, L1 40; the larger ones 4x that.
    # At 32 px: Linf as is, L2 x 1/7, L1 x 1/49.
    assert budgets["linf"] == [pytest.approx(4 / 1020, rel=0.01)]
    assert budgets["l2"] == [pytest.approx(4 * 0.15 / 7, rel=0.01)]
    assert budgets["l1"] == [pytest.approx(4 * 40 / 49, rel=0.01)]
    text = (ROOT / "config.yaml").read_text()
    comment = text[text.index("  white_box:"):text.index("  manipulations:")]
    assert "LARGER of Dapello" in comment and not re.search(r"small budgets for 224", comment)
