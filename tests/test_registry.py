"""The registries (neurobias.registry): every built-in kind declared once, the schema, validation and
the rule graph reading them, and malformed or colliding declarations refused with the plugin named."""

import subprocess
import sys

import jsonschema
import pytest
import yaml

from neurobias import registry
from neurobias.config import ConfigError, load_schema, validate_config
from neurobias.registry import (ArchitectureSpec, EvaluationSpec, RegistryError, RegulariserSpec, TargetSpec,
                                declare, declaring)

from conftest import ROOT, TINY


@pytest.fixture
def scratch_plugin():
    """Declarations made inside the test as the plugin 'scratch', forgotten afterwards."""
    yield "scratch"
    for r in registry.ALL_REGISTRIES:
        r.remove_plugin("scratch")


def test_builtin_kinds_are_declared_once_each():
    assert registry.regularisers().names() == ["similarity", "rsm", "mtl", "oracle"]
    assert set(registry.targets().names()) == {
        "model", "data", "shuffle", "vgg", "rsm_v1", "rsm_v1_shuffle", "rsm_gaussian_v1", "rsm_gaussian_other",
        "responses_model", "responses_shuffle", "responses_oracle"}
    assert registry.architectures().names() == ["resnet18", "resnet34", "cornet_z", "vgg16", "vgg11", "vgg19"]
    assert registry.evaluations().names() == ["gaussian_noise", "learning_curves", "corruptions", "adversarial"]
    assert registry.recording_sources().names() == ["simulated", "cadena2019", "file", "nwb"]
    assert registry.dataset_sources().names() == ["synthetic", "cifar10", "cifar100", "tiny_imagenet"]
    for r in registry.ALL_REGISTRIES:
        assert all(spec.plugin is None for spec in r)


@pytest.mark.parametrize("kind", ["regularisers", "targets", "architectures", "evaluations", "recording_sources",
                                  "dataset_sources"])
def test_every_builder_imports_and_is_callable(kind):
    for spec in getattr(registry, kind)():
        assert callable(spec.load()), spec.name


def test_declaring_imports_no_torch():
    """The Snakefile reads every declaration while it builds the job graph: no torch, numpy or pandas."""
    code = ("import sys; from neurobias import registry; registry.load_builtins(); "
            "import neurobias.config, neurobias.rule_params; neurobias.config.load_schema(); "
            "heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]; assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_schema_enums_and_fields_come_from_the_declarations():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    arm = schema["$defs"]["arm"]
    assert arm["properties"]["regulariser"]["enum"] == ["none", *registry.regularisers().names()]
    assert arm["properties"]["target"]["enum"] == registry.targets().names()
    assert schema["$defs"]["study"]["properties"]["model"]["properties"]["architecture"]["enum"] == \
        registry.architectures().names()
    assert list(schema["$defs"]["evaluations"]["properties"]) == registry.evaluations().names()
    # a kind's own fields are arm fields; its defaults apply to its arms only
    assert {"alpha", "r", "cost", "batch_ratio", "oracle"} <= set(arm["properties"])
    rsm_defaults = next(b["then"]["properties"] for b in arm["allOf"]
                        if b["if"]["properties"]["regulariser"]["const"] == "rsm")
    assert rsm_defaults["cost"] == {"default": "l1"} and rsm_defaults["stimulus_batch_size"] == {"default": 10}
    assert "default" not in arm["properties"]["cost"]


def test_defaults_are_filled_per_kind():
    cfg = yaml.safe_load(TINY.read_text())
    cfg["studies"]["tiny"]["arms"]["teacher"] = {"regulariser": "rsm", "target": "rsm_v1", "r": 0.5,
                                                 "layer": "layer1"}
    validate_config(cfg)
    arms = cfg["studies"]["tiny"]["arms"]
    assert arms["teacher"]["cost"] == "l1" and arms["teacher"]["stimulus_batch_size"] == 10
    assert "cost" not in arms["neural_model"] and arms["neural_model"]["stimulus_batch_size"] == 8


@pytest.mark.parametrize("change, field", [
    (lambda s: s["arms"]["none"].update(regulariser="lasso"), "studies.tiny.arms.none.regulariser"),
    (lambda s: s["model"].update(architecture="alexnet"), "studies.tiny.model.architecture"),
    (lambda s: s["evaluations"].update(made_up={}), "studies.tiny.evaluations"),
    (lambda s: s["arms"]["neural_model"].update(target="rsm_v1"), "studies.tiny.arms.neural_model.target"),
])
def test_unknown_or_unusable_names_are_refused_naming_the_field(change, field):
    cfg = yaml.safe_load(TINY.read_text())
    change(cfg["studies"]["tiny"])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(cfg)


def test_unknown_source_is_refused_naming_the_field():
    cfg = yaml.safe_load(TINY.read_text())
    cfg["recordings"]["tinyv1"]["source"] = "allen"
    with pytest.raises(ConfigError, match=r"recordings\.tinyv1\.source.*'allen'"):
        validate_config(cfg)


def test_colliding_and_malformed_declarations_name_the_plugin(scratch_plugin):
    with declaring(scratch_plugin):
        with pytest.raises(RegistryError, match=r"plugin 'scratch'.*'similarity' is already declared \(built in\)"):
            declare(RegulariserSpec, name="similarity", builder="x.y:z")
        with pytest.raises(RegistryError, match=r"plugin 'scratch'.*'none'.*reserved"):
            declare(RegulariserSpec, name="none", builder="x.y:z")
        with pytest.raises(RegistryError, match=r"plugin 'scratch'.*builder must be 'package.module:attribute'"):
            declare(ArchitectureSpec, name="net", builder="not a path")
        with pytest.raises(RegistryError, match=r"plugin 'scratch': evaluation 'ev'.*builder"):
            declare(EvaluationSpec, name="ev")  # a spec missing a required field
        with pytest.raises(RegistryError, match=r"plugin 'scratch'.*name 'Bad-Name'"):
            declare(TargetSpec, name="Bad-Name", builder="x.y:z")
        spec = declare(TargetSpec, name="scratch_target", builder="x.y:z")
    assert spec.plugin == "scratch" and "scratch_target" in registry.targets()


def test_a_field_declared_twice_differently_is_refused(scratch_plugin):
    with declaring(scratch_plugin):
        declare(RegulariserSpec, name="scratch_reg", builder="x.y:z", fields={"alpha": {"type": "string"}})
    with pytest.raises(RegistryError, match=r"scratch_reg.*plugin 'scratch'.*arms.<arm>.alpha"):
        load_schema()


def test_rule_params_read_the_target_declarations():
    from neurobias.rule_params import target_inputs, target_kinds
    assert set(target_kinds(on_device=True)) == {"model", "responses_model", "vgg"}
    assert "responses_oracle" not in target_kinds(on_device=True) + target_kinds(on_device=False)
    study = {"recording": "v1", "similarity": {"vgg_weights": "random"}}
    assert target_inputs("s", study, "shuffle") == {"source_target": "results/similarity/s/model.npy"}
    assert target_inputs("s", study, "model") == {"v1_model": "results/v1model/v1/model.pt"}
    assert target_inputs("s", study, "vgg") == {}
    assert "vgg_weights" in target_inputs("s", {**study, "similarity": {"vgg_weights": "imagenet"}}, "vgg")


def test_every_preset_validates_and_schedules(tmp_path):
    """Each preset's dry run builds its job graph from the declarations."""
    from conftest import dry_run_counts
    for preset in sorted((ROOT / "studies").glob("*.yaml")):
        if preset.name == "base.yaml":
            continue
        counts = dry_run_counts(tmp_path / preset.stem, preset)
        assert int(counts["total"]) > 0 and any(rule.startswith("stats") for rule in counts), preset.name


@pytest.mark.parametrize("spec_type, fields, message", [
    (EvaluationSpec, {"name": "noise_robustness", "generic": True}, r"figures/\{study\}/noise_robustness.pdf"),
    (EvaluationSpec, {"name": "geirhos_fig3", "generic": True}, r"another figure's"),
    (EvaluationSpec, {"name": "scratch_eval", "generic": True, "per_seed": True}, r"per_seed must be False"),
    (TargetSpec, {"name": "scratch_two", "reads": ("target:model", "target:data")}, r"at most one other target"),
    (RegulariserSpec, {"name": "scratch_reg", "study_settings": ("shuffle_seed",)}, r"only rsm_metric reaches"),
    (registry.DatasetSourceSpec, {"name": "scratch_data"}, r"declare image_size"),
])
def test_declarations_the_workflow_cannot_run_are_refused_naming_the_plugin(scratch_plugin, spec_type, fields,
                                                                            message):
    with declaring(scratch_plugin):
        declare(spec_type, builder="x.y:z", **fields)
    with pytest.raises(RegistryError, match=rf"plugin 'scratch'.*{message}|{message}.*"):
        load_schema()


def test_a_plugin_recording_source_gets_the_v1_model_section(scratch_plugin):
    with declaring(scratch_plugin):
        declare(registry.RecordingSourceSpec, name="scratch_rig", builder="x.y:z", local_file="path",
                schema={"required": ["path"], "properties": {"path": {"type": "string"}}})
    cfg = yaml.safe_load(TINY.read_text())
    cfg["recordings"]["tinyv1"] = {"source": "scratch_rig", "path": "rig.dat"}
    validate_config(cfg)
    assert cfg["recordings"]["tinyv1"]["v1_model"]["max_epochs"] == 200  # the schema's defaults, filled


def test_a_missing_file_of_the_users_is_said_with_its_key_before_any_job(tmp_path):
    from conftest import snakemake
    cfg = yaml.safe_load(TINY.read_text())
    cfg["recordings"]["tinyv1"] = {"source": "file", "path": str(tmp_path / "nowhere.npz")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(tmp_path / "work", "-n", config=tmp_path / "config.yaml", cores=False)
    assert r.returncode != 0
    assert "recordings.tinyv1.path" in r.stdout + r.stderr and "nowhere.npz" in r.stdout + r.stderr
