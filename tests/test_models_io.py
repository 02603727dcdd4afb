"""Tests for neurobias.models.io: saving and loading a classifier."""

import torch

from neurobias.models import build_classifier
from test_models import images


def test_save_and_load_classifier_with_new_options(tmp_path):
    from neurobias.models.io import load_classifier, save_classifier
    for cfg in ({"architecture": "cornet_z", "width": 4, "input_size": 40, "diagnostic_layers": ["V1"]},
                {"architecture": "vgg16", "width": 4, "batch_norm": True, "diagnostic_layers": ["conv2_1"]}):
        model = build_classifier(cfg["architecture"], 10, 1, [0.4], [0.2],
                                 **{k: v for k, v in cfg.items() if k not in ("architecture", "diagnostic_layers")})
        model.eval()
        save_classifier(model, cfg, 10, 1, tmp_path / "model.pt")
        loaded = load_classifier(tmp_path / "model.pt")
        assert loaded.input_size == cfg.get("input_size")
        x = images(2, 1)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))
