"""Tests for neurobias.rule_params: how a study's runs are grouped into packs, and which studies
train in packs with which engine and fit."""

import copy

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


STUDY = {
    "pack": 4,
    "seeds": [0, 1, 2],
    "model": {"architecture": "cornet_z", "width": 8},
    "similarity": {"rsm_metric": "cosine"},
    "arms": {"baseline": {"regulariser": "none"},
             "mtl_monkey": {"regulariser": "mtl", "target": "responses_model", "layer": "V1"},
             "oracle": {"regulariser": "oracle", "layer": "V1"},
             "mtl_oracle": {"regulariser": "mtl", "target": "responses_oracle", "layer": "V1"},
             "wide": {"regulariser": "none", "model": {"width": 16}}},
}


def test_packs_hold_runs_of_one_network_and_put_model_dependent_targets_last():
    packs = training_packs(STUDY)
    runs = [run for pack in packs for run in pack]
    assert sorted(runs) == sorted((a, s) for a in STUDY["arms"] for s in STUDY["seeds"])  # each run once
    assert all(1 <= len(p) <= 4 for p in packs)
    for pack in packs:  # one network per pack; the oracle-derived targets never beside their oracle
        assert len({a == "wide" for a, _ in pack}) == 1
        assert len({a == "mtl_oracle" for a, _ in pack}) == 1
    assert all(a == "mtl_oracle" for a, _ in packs[-1])
    assert runs[:4] == [("baseline", 0), ("baseline", 1), ("baseline", 2), ("mtl_monkey", 0)]  # config order
    one_each = training_packs({**STUDY, "pack": 1})
    assert len(one_each) == len(runs) and all(len(p) == 1 for p in one_each)
    whole = training_packs({**copy.deepcopy(STUDY), "pack": 100})
    assert [len(p) for p in whole] == [9, 3, 3]  # the common network, the wide one, the MTL-oracle runs
