"""Tests for neurobias.models.classifier: the input_size option, unknown options, and the layout a
network is scored in."""

import pytest
import torch
from torch.nn import functional as F

from neurobias.models import ARCHITECTURES, Classifier
from test_models import classifier, images


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [72, 40])  # up- and downsampling of 48x48 images (VGG needs >= 32)
def test_input_size_equals_feeding_resized_images(arch, size):
    x = images(3, size=48)
    resized = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    with_resize = classifier(arch, width=4, input_size=size).eval()
    plain = classifier(arch, width=4).eval()
    plain.load_state_dict(with_resize.state_dict())
    with torch.no_grad():
        a_logits, a = with_resize.forward_taps(x, with_resize.tap_names)
        b_logits, b = plain.forward_taps(resized, plain.tap_names)
    torch.testing.assert_close(a_logits, b_logits)
    for t in with_resize.tap_names:
        torch.testing.assert_close(a[t], b[t])
        assert a[t].shape == b[t].shape


def test_input_size_none_is_the_old_behaviour():
    model = classifier("resnet18", width=4).eval()
    assert model.input_size is None
    x = images()
    with torch.no_grad():
        old = model.backbone.forward_taps((x - model.mean) / model.std, ("layer1",))
        new = model.forward_taps(x, ("layer1",))
    assert torch.equal(old[0], new[0]) and torch.equal(old[1]["layer1"], new[1]["layer1"])
    # input_size is not state: checkpoints from before the option load either way
    assert list(classifier("resnet18", width=4, input_size=40).state_dict()) == list(model.state_dict())
    # Classifier's old positional signature still works
    Classifier(model.backbone, [0.5] * 3, [0.25] * 3)


@pytest.mark.parametrize("bad", [0, -3, 32.0, "32", True])
def test_input_size_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="input_size"):
        classifier("cornet_z", width=4, input_size=bad)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError):
        classifier("cornet_z", batch_norm=True)
    with pytest.raises(ValueError, match="architecture"):
        classifier("alexnet")


def test_a_cpu_scores_narrow_strided_1x1_convolutions_in_nchw_too():
    """Evaluation moves a network to channels_last, but a white-box attack's backward pass takes the
    weight gradient of that convolution too (it crashed brain-likeness on a width-4 ResNet): a
    network that trains in NCHW on a CPU is scored in NCHW there."""
    from neurobias.models import build_classifier, to_inference_layout
    narrow, wide = to_inference_layout([build_classifier("resnet18", 10, 3, [0.5] * 3, [0.25] * 3, width=w)
                                        for w in (4, 8)])
    assert not narrow.training and not wide.training
    def layouts(model):  # of the 3x3 kernels (a 1x1 kernel is contiguous in both layouts)
        return {(w.is_contiguous(), w.is_contiguous(memory_format=torch.channels_last))
                for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
                for w in [m.weight]}
    assert layouts(narrow) == {(True, False)} and layouts(wide) == {(False, True)}
