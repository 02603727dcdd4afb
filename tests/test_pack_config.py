"""A study's ``pack: auto`` and ``pack_engine`` in the config and the workflow: how the runs are
grouped, which arms the stacked engine accepts before any job starts, and the pack rules' params
(engine and fit mode), which decide what a change of engine retrains."""

import copy

import pytest
import yaml

from conftest import TINY, job_table, snakemake
from neurobias.config import ConfigError, validate_config
from neurobias.rule_params import pack_training, training_packs, trains_in_packs

# The default demo's shape: 3 arms x 10 seeds of one network, plus a VOneBlock arm (another network).
DEMO_LIKE = {
    "pack": "auto",
    "pack_engine": "sequential",
    "seeds": list(range(10)),
    "model": {"architecture": "resnet18", "width": 8},
    "arms": {"none": {"regulariser": "none"},
             "neural_model": {"regulariser": "similarity", "target": "model", "alpha": 30, "layers": ["layer3"]},
             "shuffle": {"regulariser": "similarity", "target": "shuffle", "alpha": 30, "layers": ["layer3"]},
             "vone": {"regulariser": "none", "model": {"vone": {}}}},
}


def tiny_config(**study) -> dict:
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"].update(study)
    return config


def test_pack_auto_makes_one_pack_per_group_of_runs_that_can_share_a_job():
    packs = training_packs(DEMO_LIKE)
    assert [len(p) for p in packs] == [30, 10]  # the common network's 30 runs, the VOneBlock arm's 10
    assert packs[0][:11] == [("none", s) for s in range(10)] + [("neural_model", 0)]  # config order
    assert {a for a, _ in packs[1]} == {"vone"}
    assert training_packs({**DEMO_LIKE, "pack": 30}) == packs  # auto = each group whole
    mtl_oracle = copy.deepcopy(DEMO_LIKE)
    mtl_oracle["arms"]["mtl_oracle"] = {"regulariser": "mtl", "target": "responses_oracle", "layer": "layer3"}
    assert [len(p) for p in training_packs(mtl_oracle)] == [30, 10, 10]  # model-dependent targets last, apart
    assert {a for a, _ in training_packs(mtl_oracle)[-1]} == {"mtl_oracle"}


def test_which_studies_train_in_packs_and_with_which_engine_and_fit():
    assert not trains_in_packs({"pack": 1, "pack_engine": "sequential"})
    assert trains_in_packs({"pack": 2, "pack_engine": "sequential"})
    assert trains_in_packs({"pack": "auto", "pack_engine": "sequential"})
    assert trains_in_packs({"pack": 1, "pack_engine": "stacked"})  # a stack of one: the engine runs in pack jobs
    assert pack_training({"pack": "auto", "pack_engine": "stacked"}) == {"engine": "stacked", "fit": "split"}
    assert pack_training({"pack": 10, "pack_engine": "stacked"}) == {"engine": "stacked", "fit": "error"}
    # the sequential engine holds one run at a time: no fit to choose, so pack 8 -> auto reruns nothing
    assert pack_training({"pack": "auto", "pack_engine": "sequential"}) == {"engine": "sequential", "fit": "error"}


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


def test_pack_auto_is_one_job_per_group_and_the_engine_is_a_param_that_retrains(tmp_path):
    """The tiny config (8 runs of one network) with ``pack: auto``: one pack job. With the outputs
    up to training in place (empty files, marked done by ``--touch --forceall``, which records each
    job's params), a pack of 8 regroups nothing and reruns nothing; the stacked engine retrains the
    pack, and only it."""
    configs = {}
    for name, study in {"auto": {"pack": "auto"}, "eight": {"pack": 8},
                        "stacked": {"pack": "auto", "pack_engine": "stacked"}}.items():
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(tiny_config(**study), sort_keys=False))
    work = tmp_path / "work"
    models = [f"results/train/tiny/{arm}/seed{seed}/model.pt"
              for arm in ("none", "neural_model", "neural_data", "shuffle") for seed in (0, 1)]
    r = snakemake(work, "-n", *models, config=configs["auto"], cores=False)  # targets after --configfile's value
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert out.count("rule train_pack__tiny__0:") == 1 and "train_pack__tiny__1" not in out
    assert "rule train:" not in out
    for line in out.splitlines():  # every output of the jobs up to training, as empty files
        if line.strip().startswith("output:"):
            for path in line.split(":", 1)[1].split(","):
                (work / path.strip()).parent.mkdir(parents=True, exist_ok=True)
                (work / path.strip()).touch()
    r = snakemake(work, "--touch", "--forceall", *models, config=configs["auto"])  # records each job's params
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r = snakemake(work, "-n", *models, config=configs["eight"], cores=False)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    r = snakemake(work, "-n", *models, config=configs["stacked"], cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert job_table(out) == {"train_pack__tiny__0": "1", "total": "1"}
    assert "params have changed" in out.lower(), out[-3000:]
