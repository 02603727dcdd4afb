"""Tests for neurobias.neural.vgg_similarity."""

import pytest


def test_vgg_weights_without_network_fail_with_a_clear_message(tmp_path, monkeypatch):
    from neurobias.neural import vgg_similarity
    monkeypatch.setattr(vgg_similarity, "VGG19_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")  # nothing listens
    with pytest.raises(vgg_similarity.WeightsUnavailable) as e:
        vgg_similarity.download_vgg19_weights(tmp_path)
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "vgg_weights: random" in msg and str(tmp_path) in msg
    assert not list(tmp_path.glob("*.pth"))
