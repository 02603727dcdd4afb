"""Config validation names the field; the shipped configs are valid."""

import copy
from pathlib import Path

import pytest
import yaml

from neurobias.config import ConfigError, resolve_device, similarity_targets, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.mark.parametrize("path", ["config.yaml", "tests/configs/tiny.yaml"])
def test_shipped_configs_are_valid(path):
    cfg = validate_config(yaml.safe_load((ROOT / path).read_text()))
    assert cfg["device"] in ("auto", "cpu")


def error_of(cfg):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    return str(e.value)


def test_unknown_key_is_named(demo):
    demo["studies"]["demo"]["training"]["epoch"] = 3
    msg = error_of(demo)
    assert "studies.demo.training" in msg and "'epoch'" in msg


def test_wrong_type_is_named(demo):
    demo["studies"]["demo"]["training"]["lr"] = "fast"
    msg = error_of(demo)
    assert "studies.demo.training.lr" in msg and "number" in msg


def test_out_of_range_is_named(demo):
    demo["studies"]["demo"]["evaluations"]["gaussian_noise"]["levels"] = [0.1, -0.2]
    msg = error_of(demo)
    assert "studies.demo.evaluations.gaussian_noise.levels.1" in msg and "minimum" in msg


def test_dataset_field_errors_reach_through_oneof(demo):
    demo["datasets"]["synthetic10"]["n_train"] = 5
    assert "datasets.synthetic10.n_train" in error_of(demo)


def test_unknown_dataset_reference(demo):
    demo["studies"]["demo"]["dataset"] = "cifar10"
    msg = error_of(demo)
    assert "studies.demo.dataset" in msg and "synthetic10" in msg


def test_similarity_arm_needs_its_fields(demo):
    del demo["studies"]["demo"]["arms"]["shuffle"]["alpha"]
    assert "studies.demo.arms.shuffle.alpha" in error_of(demo)


def test_unknown_layer(demo):
    demo["studies"]["demo"]["arms"]["neural_model"]["layers"] = ["layer9"]
    msg = error_of(demo)
    assert "studies.demo.arms.neural_model.layers" in msg and "layer9" in msg


def test_missing_baseline_arm(demo):
    del demo["studies"]["demo"]["arms"]["none"]
    assert "studies.demo.baseline_arm" in error_of(demo)


def test_bad_device(demo):
    demo["device"] = "gpu0"
    assert "'device'" in error_of(demo)


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_similarity_targets_always_include_the_diagnostic_model_target(demo):
    study = demo["studies"]["demo"]
    assert similarity_targets(study) == ["data", "model", "shuffle"]
    only_none = copy.deepcopy(study)
    only_none["arms"] = {"none": {"regulariser": "none"}}
    assert similarity_targets(only_none) == ["model"]


def test_step_schedule_needs_its_parameters(demo):
    demo["studies"]["demo"]["training"]["lr_schedule"] = {"kind": "step"}
    msg = error_of(demo)
    assert "studies.demo.training.lr_schedule" in msg and "every" in msg


def test_unknown_diagnostic_layer(demo):
    demo["studies"]["demo"]["model"]["diagnostic_layers"] = ["layer_1"]
    msg = error_of(demo)
    assert "studies.demo.model.diagnostic_layers" in msg and "layer_1" in msg
