"""Parity of the VOneBlock with the authors' code (Dapello et al. 2020; dicarlolab/vonenet), issue
31 item 3: the Gabor kernels (their ``utils.gabor_kernel``, whose grid's x is the row offset), the
input channel each filter of a quadrature pair reads (drawn independently for q0 and q1, as their
``GFB.initialize``) and the noise-free block output, against reference outputs computed once from
their code on parameters drawn by our sampler. tests/fixtures/parity/vonenet.json names the
repository, commit, paths and functions and says how the arrays were made."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurobias.models.vone import (VONE_DEFAULTS, VOneBlock, gabor_kernels, sample_gabor_parameters,
                                   sample_input_channels, vone_options)

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "vonenet"
REF = np.load(FIXTURE.with_suffix(".npz"))
META = json.loads(FIXTURE.with_suffix(".json").read_text())
CFG = META["config"]
THEIR_NAMES = {"orientation": "theta", "sf": "sf", "sigma_x": "sigx", "sigma_y": "sigy", "phase": "phase"}


def their_parameters(prefix):
    """The parameters handed to their code, in the order of our gabor_kernels' arguments."""
    return [REF[f"{prefix}_{THEIR_NAMES[k]}"] for k in ("orientation", "sf", "sigma_x", "sigma_y", "phase")]


def test_fixture_names_its_source():
    assert META["repository"] == "https://github.com/dicarlolab/vonenet"
    assert len(META["commit"]) == 40
    assert {"vonenet/utils.py", "vonenet/modules.py"} <= set(META["paths"])


def test_our_sampler_drew_the_parameters_their_code_was_given():
    n = CFG["simple_channels"] + CFG["complex_channels"]
    block = sample_gabor_parameters(n, CFG["seed"], CFG["parameters"], CFG["image_size"] / CFG["visual_degrees"],
                                    CFG["sf_max"], CFG["sf_corr"])
    k25 = sample_gabor_parameters(8, 3, "v1", 224 / 8, 6.0, 0.75)
    for ours, prefix in ((block, "block"), (k25, "k25")):
        for name, theirs in THEIR_NAMES.items():
            np.testing.assert_array_equal(ours[name], REF[f"{prefix}_{theirs}"], err_msg=f"{prefix} {name}")
        # theta: the same filters' wave-vector direction in image coordinates (x = column, y = row)
        np.testing.assert_allclose(ours["theta"], np.pi / 2 - ours["orientation"], rtol=0, atol=1e-15)


def test_kernels_are_their_gabor_kernel():
    ours = gabor_kernels(*their_parameters("k25"), kernel_size=25)
    theirs = REF["k25_kernels"]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    # not a pass by symmetry: the transposed kernels (the old convention) differ from theirs
    assert np.abs(np.swapaxes(ours, 1, 2) - theirs).max() > 100 * 1e-6


@pytest.mark.parametrize("seed", [0, 7])
def test_channel_draws_are_theirs(seed):
    q0, q1 = sample_input_channels(512, 3, seed)
    np.testing.assert_array_equal(q0, REF[f"channels_seed{seed}_q0"])
    np.testing.assert_array_equal(q1, REF[f"channels_seed{seed}_q1"])
    # about a third of the pairs read one channel with both filters (theirs: 33.6 % at seed 0, 32.4 % at 7)
    assert 0.28 < np.mean(q0 == q1) < 0.39
    shared_q0, shared_q1 = sample_input_channels(512, 3, seed, "shared")
    np.testing.assert_array_equal(shared_q0, q0)
    np.testing.assert_array_equal(shared_q1, q0)


def test_block_is_their_block_without_noise():
    block = VOneBlock(**CFG, noise=False)
    assert block.quadrature_channels == "independent" == VONE_DEFAULTS["quadrature_channels"]
    np.testing.assert_allclose(block.weight_q0.numpy(), REF["block_weight_q0"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(block.weight_q1.numpy(), REF["block_weight_q1"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(block.input_channel.numpy(), REF["block_channel_q0"])
    np.testing.assert_array_equal(block.input_channel_q1.numpy(), REF["block_channel_q1"])
    assert (block.input_channel != block.input_channel_q1).any()
    with torch.no_grad():
        out = block(torch.as_tensor(REF["images"]))
    np.testing.assert_allclose(out.numpy(), REF["block_output"], rtol=0, atol=1e-5)
    # the orientation buffer's counterpart: VOneNet's theta
    torch.testing.assert_close(block.orientation.double(), torch.as_tensor(REF["block_theta"]), rtol=0, atol=1e-6)


def test_shared_channels_make_quadrature_pairs_on_one_channel():
    ours = VOneBlock(**CFG, noise=False)
    shared = VOneBlock(**CFG, noise=False, quadrature_channels="shared")
    assert torch.equal(shared.input_channel_q1, shared.input_channel)
    assert torch.equal(shared.weight_q0, ours.weight_q0)  # q0 filters and simple cells unchanged
    x = torch.as_tensor(REF["images"])
    s = CFG["simple_channels"]
    with torch.no_grad():
        a, b = ours(x), shared(x)
    assert torch.equal(a[:, :s], b[:, :s])
    differs = (ours.input_channel_q1 != shared.input_channel_q1)[s:]
    assert differs.any()
    changed = (a[:, s:] - b[:, s:]).abs().amax(dim=(0, 2, 3)) > 1e-4
    assert torch.equal(changed, differs)  # exactly the complex cells whose q1 filter moved


def test_quadrature_channels_option():
    assert vone_options(True)["quadrature_channels"] == "independent"
    assert vone_options({"quadrature_channels": "shared"})["quadrature_channels"] == "shared"
    with pytest.raises(ValueError, match="quadrature_channels"):
        VOneBlock(3, quadrature_channels="paired")
