"""Config validation (neurobias.config) names the field, fills the schema's defaults and expands the
sweeps, for every study's rules (Federer, Safarani, packs and the stacked engine, model and training
options); the shipped configs are valid."""

import copy
from pathlib import Path

import pytest
import yaml

from neurobias.config import (ConfigError, expand_sweeps, resolve_device, similarity_targets, sweep_arm_name,
                              validate_config, with_defaults)
from test_faithful_methods import demo_config, tiny_safarani
from test_federer import fed_cfg  # noqa: F401  (fixture: the tiny Federer config)
from test_pack_config import tiny_config

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


def test_device_resolution_refuses_what_the_job_cannot_have(monkeypatch):
    """A GPU index the job cannot see, and a SLURM job given a GPU that torch cannot use (a driver
    older than torch's CUDA build), stop with the field named instead of failing at the first
    transfer or training on the CPU; 'auto' elsewhere without CUDA is the CPU."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("cuda") == "cuda"
    with pytest.raises(ConfigError, match=r"'device': 'cuda:1' requested but only 1 CUDA device"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device("auto") == "cpu"
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with pytest.raises(ConfigError, match=r"'device': 'auto' in a SLURM job given a GPU \(CUDA_VISIBLE_DEVICES=0\)"):
        resolve_device("auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resolve_device("auto") == "cpu"  # a CPU job of the same cluster


def test_similarity_targets_always_include_the_diagnostic_model_target(demo):
    study = demo["studies"]["demo"]
    assert similarity_targets(study) == ["model", "shuffle"]
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


# -- presets: one shared base, and only what differs from it --------------------------------------
PRESETS = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, tree


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.name != "base.yaml"], ids=lambda p: p.name)
def test_presets_hold_only_what_differs_from_the_shared_base(preset):
    raw = yaml.safe_load(preset.read_text())
    assert raw.get("extends") == "studies/base.yaml"
    base = yaml.safe_load((preset.parent / "base.yaml").read_text())
    base_leaves = dict(_leaves(base))
    repeated = [".".join(map(str, path)) for path, value in _leaves(raw)
                if path in base_leaves and base_leaves[path] == value]
    assert not repeated, f"{preset.name} repeats studies/base.yaml: {repeated}"
    config = validate_config(yaml.safe_load(preset.read_text()))
    assert "extends" not in config and "cadena2019" in config["recordings"]  # the base's recording arrives


def test_extends_merges_mappings_and_names_a_missing_file(tmp_path):
    from neurobias.config import resolve_extends
    (tmp_path / "base.yaml").write_text("a: {b: 1, c: 2}\nd: [1, 2]\n")
    config = {"extends": "base.yaml", "a": {"c": 3}, "d": [5]}
    resolve_extends(config, tmp_path)
    assert config == {"a": {"b": 1, "c": 3}, "d": [5]}
    with pytest.raises(ConfigError, match="config field 'extends': no file .*missing.yaml"):
        resolve_extends({"extends": "missing.yaml"}, tmp_path)


def test_schema_defaults_are_filled_per_regulariser():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "tests/configs/tiny.yaml").read_text())
    study = config["studies"]["tiny"]
    study["arms"]["rsm"] = {"regulariser": "rsm", "target": "rsm_v1", "r": 0.1, "layer": "layer1"}
    study["arms"]["mtl"] = {"regulariser": "mtl", "target": "responses_model", "layer": "layer1"}
    del study["arms"]["neural_data"]["stimulus_batch_size"]
    arms = validate_config(config)["studies"]["tiny"]["arms"]
    assert arms["neural_data"]["stimulus_batch_size"] == 32 and arms["neural_model"]["stimulus_batch_size"] == 8
    assert (arms["rsm"]["stimulus_batch_size"], arms["rsm"]["cost"], arms["rsm"]["alternate"]) == (10, "l1", True)
    assert (arms["mtl"]["stimulus_batch_size"], arms["mtl"]["batch_ratio"]) == (64, 1.0)
    assert "cost" not in arms["mtl"] and "label_noise" not in arms["none"]  # absence that means something stays
    training = config["studies"]["tiny"]["training"]
    assert training["lr_schedule"] == {"kind": "constant"} and training["momentum"] == 0.9


def test_schema_defaults_match_the_library_functions_they_feed():
    """The schema is the one source of defaults; functions callable outside the workflow keep theirs,
    and they must agree."""
    import dataclasses
    import inspect

    from neurobias.config import load_schema
    from neurobias.data.synthetic import make_synthetic_task
    from neurobias.neural.simulated_v1 import V1PopulationParams
    from neurobias.neural.v1_model import fit_v1_model
    from neurobias.registry import dataset_sources
    from neurobias.train import TrainingConfig
    defs = load_schema()["$defs"]

    def defaults(props):
        return {k: v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v}

    checks = [(defaults(defs["v1_model"]["properties"]), inspect.signature(fit_v1_model).parameters),
              (defaults(dataset_sources()["synthetic"].schema["properties"]),
                   inspect.signature(make_synthetic_task).parameters)]
    for schema_defaults, params in checks:
        for key, value in schema_defaults.items():
            if key in params and params[key].default is not inspect.Parameter.empty:
                assert params[key].default == value, key
    population = {f.name: f.default for f in dataclasses.fields(V1PopulationParams)}
    for key, value in defaults(defs["population"]["properties"]).items():
        assert population[key] == value, key
    training = {f.name: f.default for f in dataclasses.fields(TrainingConfig)
                if f.default is not dataclasses.MISSING}
    for key, value in defaults(defs["study"]["properties"]["training"]["properties"]).items():
        if key in training:
            assert training[key] == value, key


def test_the_default_config_tests_each_seed_claim(demo):
    """What issue 17 asks of the default run, pinned: paired tests over 10 seeds of None, Neural
    (model) and Shuffle; a Safarani demo whose shared core is a VGG up to conv3_1 and whose
    robustness is also scored against MTL-shuffled; brain-likeness over at least 20 models."""
    cfg = validate_config(demo)
    li = cfg["studies"]["demo"]
    assert {"none", "neural_model", "shuffle"} <= set(li["arms"]) and len(li["seeds"]) >= 10
    assert li["baseline_arm"] == "none" and li["control_arms"] == ["shuffle"]
    assert cfg["studies"]["demo"]["statistics"]["test"] == "paired"
    saf = cfg["studies"]["safarani_demo"]
    assert saf["model"]["architecture"].startswith("vgg") and saf["model"]["head_init"] == "width_scaled"
    assert {a["layer"] for a in saf["arms"].values() if a["regulariser"] in ("mtl", "oracle")} == {"conv3_1"}
    assert saf["control_arms"] == ["mtl_shuffled"] and "corruptions" in saf["evaluations"]
    pooled = sum(len(cfg["studies"][s]["arms"]) * len(cfg["studies"][s]["seeds"])
                 for s in cfg["brain_likeness"]["studies"])
    assert pooled >= 20


# -- Federer et al. 2020's study: sweeps, errors -------------------------------------------------
def _fed_config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "federer_tiny.yaml").read_text())


def test_sweeps_expand_into_named_arms(fed_cfg):
    arms = validate_config(copy.deepcopy(fed_cfg))["studies"]["fed"]["arms"]
    hand = fed_cfg["studies"]["fed"]["arms"]
    assert set(arms) == set(hand) | {"v1_labelnoise0.5", "no_neural_labelnoise0.5", "v1_r1"}
    assert arms["v1_labelnoise0.5"] == {**arms["v1"], "label_noise": 0.5, "sweep_of": "v1"}
    assert arms["no_neural_labelnoise0.5"] == {"regulariser": "none", "label_noise": 0.5, "sweep_of": "no_neural"}
    assert arms["v1_r1"] == {**arms["v1"], "r": 1.0, "sweep_of": "v1"}
    assert "label_noise" not in arms["v1_r1"]
    assert arms["v1"] == {**hand["v1"], "cost": "l1", "weighting": "ratio", "alternate": True,
                          "neural_batchnorm": "update"}  # base arm untouched
    assert sweep_arm_name("v1", "label_noise", 0.25) == "v1_labelnoise0.25"
    assert sweep_arm_name("v1", "r", 0.1) == "v1_r0.1"


def test_validation_is_idempotent(fed_cfg):
    once = validate_config(copy.deepcopy(fed_cfg))
    twice = validate_config(copy.deepcopy(once))
    assert twice["studies"]["fed"]["arms"] == once["studies"]["fed"]["arms"]
    study = copy.deepcopy(once["studies"]["fed"])
    expand_sweeps(study, "studies.fed")
    assert study["arms"] == once["studies"]["fed"]["arms"]


def test_shipped_federer_demo_is_valid():
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    arms = cfg["studies"]["federer_demo"]["arms"]
    assert arms["v1_labelnoise0.5"]["label_noise"] == 0.5 and arms["v1_r1"]["r"] == 1.0


@pytest.mark.parametrize("mutate, field, also", [
    (lambda s: s["arms"]["v1"].pop("layer"), "studies.fed.arms.v1.layer", "rsm"),
    (lambda s: s["arms"]["v1"].update(layer="layer1"), "studies.fed.arms.v1.layer", "layer1"),
    (lambda s: s["arms"]["v1"].update(target="model"), "studies.fed.arms.v1.target", "model"),
    (lambda s: s["sweeps"]["label_noise"].update(arms=["no_neural", "nope"]),
     "studies.fed.sweeps.label_noise.arms", "nope"),
    (lambda s: s["sweeps"]["r"].update(arms=["no_neural"]), "studies.fed.sweeps.r.arms", "no_neural"),
    (lambda s: s["training"].update(track_test=False), "studies.fed.training.track_test", "learning_curves"),
    (lambda s: s["training"].pop("track_test"), "studies.fed.training.track_test", "learning_curves"),
    (lambda s: s["model"].update(batch_norm=True), "studies.fed.model.batch_norm", "cornet_z"),
])
def test_config_errors_name_the_field(fed_cfg, mutate, field, also):
    mutate(fed_cfg["studies"]["fed"])
    msg = error_of(fed_cfg)
    assert field in msg and also in msg


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["studies"]["fed"]["sweeps"]["label_noise"].update(arms=["v1"]), "sweeps.label_noise.arms"),
    (lambda c: c["studies"]["fed"]["evaluations"]["learning_curves"].update(metrics=["within_superclass_error"]),
     "learning_curves.metrics"),
    (lambda c: c["studies"]["fed"]["model"].update(architecture="vgg16", input_size=16), "model"),
    (lambda c: c["studies"]["fed"]["arms"]["no_neural"].update(model={"vone": {"simple_channels": 0, "complex_channels": 0}}),
     "arms.no_neural.model.vone"),
])
def test_configs_that_would_fail_inside_a_job_are_refused_up_front(edit, field):
    from neurobias.config import ConfigError, validate_config
    cfg = _fed_config()
    edit(cfg)
    if cfg["studies"]["fed"]["model"]["architecture"] == "vgg16":
        for arm in cfg["studies"]["fed"]["arms"].values():
            if arm.get("layer"):
                arm["layer"] = "conv2_1"
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(cfg)


def test_unknown_manipulation_is_refused_by_the_schema():
    from neurobias.config import ConfigError, validate_config
    cfg = _fed_config()
    cfg["brain_likeness"] = {"manipulations": {"levels": {"blur": [1]}}}
    with pytest.raises(ConfigError, match="brain_likeness.manipulations.levels"):
        validate_config(cfg)


# -- Safarani et al. 2021's study ---------------------------------------------------------------
TINY_CFG = ROOT / "tests" / "configs" / "safarani_tiny.yaml"


def tiny():
    return yaml.safe_load(TINY_CFG.read_text())


@pytest.mark.parametrize("change, field", [
    (lambda s: (s["model"].update(architecture="resnet18"),
                [a.update(layer="layer1") for a in s["arms"].values() if "layer" in a]), "arms.oracle.regulariser"),
    (lambda s: s["similarity"].pop("oracle_readout"), "similarity.oracle_readout"),
    (lambda s: s["similarity"]["oracle_readout"].update(arm="baseline"), "similarity.oracle_readout.arm"),
    (lambda s: s["sweeps"]["batch_ratio"].update(arms=["baseline"]), "sweeps.batch_ratio.arms"),
    (lambda s: s["arms"]["oracle"].update(target="responses_model"), "arms.oracle.target"),
    (lambda s: s["arms"]["mtl_monkey"].update(target="model"), "arms.mtl_monkey.target"),
    (lambda s: s["arms"]["mtl_monkey"].update(layer="conv9_9"), "arms.mtl_monkey.layer"),
    (lambda s: s["arms"]["mtl_monkey"].update(batch_ratio=0), "batch_ratio"),
    (lambda s: s["evaluations"]["corruptions"].update(corruptions=["rain"]), "corruptions"),
    (lambda s: s["evaluations"]["corruptions"].update(regression_pools=["nope"]), "regression_pools"),
    (lambda s: s["evaluations"]["corruptions"].update(regression_pools=["mtl_monkey_ratio2"]), "regression_pools"),
    (lambda s: s["evaluations"]["corruptions"].update(example_severity=2), "example_severity"),
    (lambda s: s["arms"]["oracle"].update(model={"vone": True}), "arms.oracle.model.vone"),
    (lambda s: s["arms"]["oracle"]["oracle"].update(clean_fraction=0.99), "arms.oracle.oracle.clean_fraction"),
])
def test_bad_safarani_configs_name_the_field(change, field):
    cfg = tiny()
    change(cfg["studies"]["saf"])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(cfg)


def test_corruptions_need_images_of_32_px():
    cfg = tiny()
    cfg["datasets"]["tinygrey"]["image_size"] = 16
    cfg["studies"]["saf"]["model"]["input_size"] = 32
    with pytest.raises(ConfigError, match=r"datasets\.tinygrey\.image_size"):
        validate_config(cfg)


def test_batch_ratio_sweep_generates_named_arms():
    study = validate_config(tiny())["studies"]["saf"]
    assert study["arms"]["mtl_monkey_ratio0.5"] == {**study["arms"]["mtl_monkey"], "batch_ratio": 0.5,
                                                    "sweep_of": "mtl_monkey"}
    assert {"mtl_shuffled_ratio2", "mtl_monkey_ratio2"} <= set(study["arms"])


def test_target_scale_schema_default_and_error():
    cfg = tiny_safarani()
    arms = validate_config(copy.deepcopy(cfg))["studies"]["saf"]["arms"]
    assert {arms[a]["target_scale"] for a in ("mtl_monkey", "mtl_shuffled", "mtl_oracle")} == {"raw"}
    cfg["studies"]["saf"]["arms"]["mtl_monkey"]["target_scale"] = "zscore"
    with pytest.raises(ConfigError, match=r"studies\.saf\.arms\.mtl_monkey\.target_scale"):
        validate_config(cfg)


def test_neural_batchnorm_schema_defaults_and_error():
    cfg = demo_config()
    arms = validate_config(copy.deepcopy(cfg))["studies"]
    for study, arm in (("demo", "neural_model"), ("federer_demo", "v1"), ("safarani_demo", "mtl_monkey")):
        assert arms[study]["arms"][arm]["neural_batchnorm"] == "update", (study, arm)
    assert "neural_batchnorm" not in arms["demo"]["arms"]["none"]
    for kind in ("similarity", "rsm", "mtl"):
        assert with_defaults({"regulariser": kind}, "arm")["neural_batchnorm"] == "update"
    cfg["studies"]["demo"]["arms"]["neural_model"]["neural_batchnorm"] = "frozen"
    with pytest.raises(ConfigError, match=r"studies\.demo\.arms\.neural_model\.neural_batchnorm"):
        validate_config(cfg)


# -- models and training -------------------------------------------------------------------------
def test_head_init_is_a_vgg_option_in_the_config():
    import copy
    import yaml
    from neurobias.config import ConfigError, validate_config
    from conftest import ROOT
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    bad = copy.deepcopy(config)
    bad["studies"]["safarani_demo"]["model"]["head_init"] = "xavier"
    with pytest.raises(ConfigError, match="safarani_demo.model.head_init"):
        validate_config(bad)
    bad = copy.deepcopy(config)
    bad["studies"]["demo"]["model"]["head_init"] = "width_scaled"
    with pytest.raises(ConfigError, match="head_init"):
        validate_config(bad)


@pytest.mark.parametrize("value, error", [("auto", None), (256, None), ("big", "'auto' was expected"),
                                          (0, "less than the minimum")])
def test_eval_batch_size_in_the_config(value, error):
    import yaml
    from conftest import TINY
    from neurobias.config import ConfigError, validate_config
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"]["training"].pop("eval_batch_size", None)
    assert validate_config(config)["studies"]["tiny"]["training"]["eval_batch_size"] == "auto"
    config["studies"]["tiny"]["training"]["eval_batch_size"] = value
    if error is None:
        assert validate_config(config)["studies"]["tiny"]["training"]["eval_batch_size"] == value
    else:
        with pytest.raises(ConfigError, match=rf"studies\.tiny\.training\.eval_batch_size(.|\n)*{error}"):
            validate_config(config)


# -- pack and pack_engine --------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, "all", 2.5])  # "auto" is a pack (test_pack_and_pack_engine_defaults_and_values)
def test_a_bad_pack_is_a_config_error_naming_the_field(value):
    import yaml
    from conftest import TINY
    from neurobias.config import ConfigError, validate_config
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"]["pack"] = value
    with pytest.raises(ConfigError, match=r"studies\.tiny\.pack"):
        validate_config(config)
    config["studies"]["tiny"].pop("pack")
    assert validate_config(config)["studies"]["tiny"]["pack"] == 1  # the schema's default: one job per model


def test_pack_and_pack_engine_defaults_and_values():
    study = validate_config(tiny_config())["studies"]["tiny"]
    assert (study["pack"], study["pack_engine"]) == (1, "sequential")
    study = validate_config(tiny_config(pack="auto", pack_engine="stacked"))["studies"]["tiny"]
    assert (study["pack"], study["pack_engine"]) == ("auto", "stacked")
    with pytest.raises(ConfigError, match=r"studies\.tiny\.pack_engine"):
        validate_config(tiny_config(pack_engine="vmap"))


def test_a_stacked_study_with_none_and_similarity_arms_validates():
    config = validate_config(tiny_config(pack_engine="stacked"))  # none, similarity arms on a ResNet-18
    assert config["studies"]["tiny"]["pack_engine"] == "stacked"


def add_mtl_arm(study):
    study["arms"]["extra"] = {"regulariser": "mtl", "target": "responses_model", "layer": "layer1"}


def add_vone_arm(study):
    study["arms"]["extra"] = {"regulariser": "none", "model": {"vone": {}}}  # {}: the front end, all defaults


def use_vgg(study):
    study["model"] = {"architecture": "vgg11", "width": 4, "diagnostic_layers": ["conv2_1"]}
    for arm in study["arms"].values():
        if "layers" in arm:
            arm["layers"] = ["conv2_1"]


def use_plateau(study):
    study["training"]["lr_schedule"] = {"kind": "plateau"}


def add_oracle_arm(study):
    use_vgg(study)  # the oracle needs a network that defines its core (not the ResNet)
    study["arms"]["extra"] = {"regulariser": "oracle", "layer": "conv2_1", "oracle": {"pretrain_epochs": 1}}


# (change to the tiny study, what the error names: the arm, the reason's field)
UNSTACKABLE = {"plateau": (use_plateau, "'none'", "'plateau'")}


@pytest.mark.parametrize("case", UNSTACKABLE)
def test_a_stacked_study_with_an_arm_the_engine_cannot_train_is_a_config_error(case):
    change, arm, reason = UNSTACKABLE[case]
    config = tiny_config()
    change(config["studies"]["tiny"])
    validate_config(copy.deepcopy(config))  # valid with the sequential engine
    config["studies"]["tiny"]["pack_engine"] = "stacked"
    with pytest.raises(ConfigError, match=r"studies\.tiny\.pack_engine") as error:
        validate_config(config)
    message = str(error.value)
    assert f"arm {arm}" in message and reason in message and "pack_engine: sequential" in message


@pytest.mark.parametrize("change", [add_mtl_arm, add_vone_arm, use_vgg, add_oracle_arm])
def test_random_layers_an_mtl_head_and_the_oracle_stack(change):
    """VGG's dropout, a VOneBlock's noise and an MTL readout's positions draw through
    neurobias.models.random_draws, which gives each run of a stack its own job's numbers; the
    oracle's two stages run in the stacked loop."""
    config = tiny_config(pack_engine="stacked")
    change(config["studies"]["tiny"])
    assert validate_config(config)["studies"]["tiny"]["pack_engine"] == "stacked"
