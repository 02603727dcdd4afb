"""ImageNet-C noise corruptions: gaussian_noise, shot_noise, impulse_noise.

gaussian_noise  x + N(0, c^2).
shot_noise      Poisson(x c) / c (only min(K, c) matters: c + 1 outcomes per pixel value).
impulse_noise   salt-and-pepper, amount c, half salt (skimage ``random_noise(mode='s&p')``).

Agreement with imagecorruptions 1.1.2: the same distribution. gaussian_noise draws exact normals;
shot_noise samples Walker alias tables over the reference's c + 1 possible outputs
(probabilities exact to ~1e-7, float32 uniforms); impulse_noise uses 16-bit uniforms
(probabilities rounded to multiples of 2**-16). The per-pixel fields are drawn on the images'
device. Shot and impulse noise have compiled CPU kernels; Gaussian noise has none (most of its
time is the normal draws).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._common import U16, _cpu_kernels, _kernels, _on_device, _rand, _randn, _random_int16, _uint8_native

# imagecorruptions 1.1.2's parameter tables, severity 1..5.
GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE = (60, 25, 12, 5, 3)
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)


def _gaussian_noise_apply(x: torch.Tensor, severity: int, std_normal: torch.Tensor) -> torch.Tensor:
    return std_normal.mul_(GAUSSIAN_NOISE[severity - 1]).add_(x)


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # no CPU kernel: most of the time is the normal draws (a one-pass kernel measured 0.96x)
    return _gaussian_noise_apply(x, severity, _randn(x.shape, generator, x.device))


@functools.lru_cache(maxsize=None)
def _shot_alias_cpu(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Alias tables (Walker/Vose) of the reference's output for every pixel value k = 0..255.

    The reference returns np.uint8(np.clip(K / c, 0, 1) * 255) with K ~ Poisson(k / 255 * c):
    only min(K, c) matters, c + 1 outcomes. Returns (prob float32 [256 * (c+1)], outcome uint8
    [256 * (c+1) * 2]: entry 2 (k (c+1) + column) + accepted is the column's own value if
    accepted, else its alias's value)."""
    lam = (np.arange(256) / 255.0) * c  # the reference: (np.array(x) / 255.) * c
    ks = np.arange(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        loglam = np.log(lam)
        logpmf = -lam[:, None] + ks[None, :] * loglam[:, None] - np.array([math.lgamma(k + 1) for k in ks])[None, :]
    pmf = np.exp(np.where(lam[:, None] > 0, logpmf, np.where(ks[None, :] == 0, 0.0, -np.inf)))
    pmf = np.concatenate([pmf, np.clip(1 - pmf.sum(axis=1, keepdims=True), 0, 1)], axis=1)  # [256, c+1]
    values = np.uint8(np.clip(np.arange(c + 1) / float(c), 0, 1) * 255)
    m = c + 1
    prob = np.ones((256, m))
    alias = np.tile(np.arange(m), (256, 1))
    for row in range(256):  # Vose's alias method
        scaled = pmf[row] / pmf[row].sum() * m
        small = [j for j in range(m) if scaled[j] < 1.0]
        large = [j for j in range(m) if scaled[j] >= 1.0]
        while small and large:
            lo, hi = small.pop(), large.pop()
            prob[row, lo], alias[row, lo] = scaled[lo], hi
            scaled[hi] -= 1.0 - scaled[lo]
            (small if scaled[hi] < 1.0 else large).append(hi)
    # outcome of (pixel value, column, accepted?): the alias's value, or the column's own
    outcome = np.stack([values[alias], np.broadcast_to(values, (256, m))], axis=-1)
    return torch.from_numpy(prob.astype(np.float32).reshape(-1)), torch.from_numpy(outcome.reshape(-1).copy())


def _shot_noise(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Poisson(x8 c) / c, sampled exactly (up to float32 uniforms) with alias tables over the
    reference's c + 1 possible outputs per pixel value."""
    c = SHOT_NOISE[severity - 1]
    prob, outcome = (_on_device(("shot", c, i), x8.device, lambda i=i: _shot_alias_cpu(c)[i]) for i in range(2))
    t = _rand(x8.shape, generator, x8.device)
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().shot_noise_apply(x8.numpy(), t.numpy(), c, prob.numpy(), outcome.numpy(),
                                                             np.empty(x8.shape, np.uint8)))
    t = t.mul_(c + 1)
    col = torch.floor(t)
    t.sub_(col)  # uniform in [0, 1): accept the column's own outcome if below prob
    col = col.to(torch.int32).clamp_(max=c).view(-1)
    idx = x8.view(-1).to(torch.int32).mul_(c + 1).add_(col)
    accept = t.view(-1) < prob.index_select(0, idx)
    return outcome.index_select(0, idx.mul_(2).add_(accept)).view(x8.shape)


def _impulse_noise(x8: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """skimage.util.random_noise(mode='s&p', amount=c): each value independently becomes 0 or 1
    with probability c/2 each. One 16-bit uniform u per value: u < c/2 -> 0, c/2 <= u < c -> 1
    (the probabilities rounded to multiples of 2**-16)."""
    c = IMPULSE_NOISE[severity - 1]
    words = _random_int16(x8.numel(), generator, x8.device).view(x8.shape)
    pepper, salt = round(c / 2 * U16) - 32768, round(c * U16) - 32768
    if _kernels(x8):
        return torch.from_numpy(_cpu_kernels().impulse_noise_apply(x8.numpy(), words.numpy(), pepper, salt,
                                                                np.empty(x8.shape, np.uint8)))
    u = words ^ -32768  # u16 - 32768, order-preserving
    flipped = (u < salt).view(torch.uint8).neg_()  # 0xFF where the value is replaced
    salted = (u >= pepper).view(torch.uint8).neg_()  # 0xFF (salt) or 0 (pepper) where replaced
    return (x8 & ~flipped) | (salted & flipped)


shot_noise = _uint8_native(_shot_noise, "shot_noise")
impulse_noise = _uint8_native(_impulse_noise, "impulse_noise")
