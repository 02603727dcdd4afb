"""Tests for neurobias.stacking_rules: which runs stack."""

from neurobias.stacking_rules import stack_key


def test_runs_stack_when_they_differ_only_in_data():
    arm = {"regulariser": "similarity", "alpha": 1.0, "layers": ["V2"], "target": "model"}
    assert stack_key(arm) == stack_key({**arm, "target": "shuffle", "label_noise": 0.2})
    assert stack_key(arm) != stack_key({**arm, "alpha": 2.0})
