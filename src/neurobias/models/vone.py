"""VOneBlock: a fixed, stochastic model of primate V1 in front of any backbone (Dapello et al.
2020, "Simulating a Primary Visual Cortex at the Front of CNNs Improves Robustness to Image
Perturbations", NeurIPS; a structure-level inductive bias in the sense of Sinz et al. 2019, Fig. 3).

Written from the paper (section 3 and appendix) and the published definition (dicarlolab/vonenet:
``vonenet/modules.py``, ``params.py``, ``vonenet.py``); the code is ours.

The block, per output channel k (``simple_channels`` simple cells first, then ``complex_channels``
complex cells), each filter of a quadrature pair on one input channel drawn at random (as VOneNet,
which puts each Gabor on one colour channel):

    q0_k = G(ori_k, f_k, sigma_x_k, sigma_y_k, phase_k)        * x[c_k]   (stride, zero padding k//2)
    q1_k = G(ori_k, f_k, sigma_x_k, sigma_y_k, phase_k + pi/2) * x[d_k]
    simple  = k_exc * relu(q0)                                  (linear-nonlinear, one phase)
    complex = k_exc * sqrt(q0^2 + q1^2) / sqrt(2)               (energy of a quadrature pair)

    G(u, v) = exp(-u^2 / (2 sigma_x^2) - v^2 / (2 sigma_y^2)) / (2 pi sigma_x sigma_y) * cos(2 pi f u + phase)
    u = cos(ori) dy + sin(ori) dx,  v = -sin(ori) dy + cos(ori) dx

with dy the row and dx the column offset from the kernel centre: VOneNet's ``utils.gabor_kernel``,
whose grid's x is the row offset (``torch.meshgrid``'s default "ij" indexing) and y the column
offset. So ``ori`` (VOneNet's ``theta``) is the preferred orientation of the bars as displayed,
counter-clockwise from horizontal (0: horizontal bars, pi/2: vertical, pi/4: "/"). ``sigma_x`` is
the envelope's SD across the bars, ``sigma_y`` along them. The envelope integrates to one (as VOneNet; no mean is subtracted).

Input channels (``quadrature_channels``): ``independent`` (the default, as VOneNet's code:
``GFB.initialize`` draws ``torch.randint(0, in_channels, (out_channels,))`` once for the q0 bank
and again for the q1 bank, so d_k is drawn independently of c_k and, with 3 input channels, only
about a third of the complex cells read one channel with both filters) or ``shared`` (d_k = c_k, a
true quadrature pair on every input: the fix the authors agreed to in dicarlolab/vonenet issue 20,
where they call the independent draw a bug that affects complex cells on coloured stimuli but not
their grey-scale neural fits; measured: on a grating in one colour channel, 37 of 54 complex cells
of a 3-channel block vary by more than half their mean across the grating's phase with independent
draws, none with shared ones). The draws come from a ``torch.Generator`` seeded with ``seed``: the
same channels as VOneNet's block built right after ``torch.manual_seed(seed)``; simple cells read
c_k either way. With one input channel both are the same.

The buffer ``theta`` describes each filter in image coordinates: the direction of its carrier's
wave vector, atan2(row component, column component) = pi/2 - ori, in (-pi/2, pi/2];
:attr:`VOneBlock.orientation` gives ori back. The filters are buffers, never trained, and are saved
in the state dict, so a checkpoint is self-contained; rebuilding from the same options regenerates
them identically.

Measured against VOneNet (tests/test_vone_parity.py, reference outputs of dicarlolab/vonenet at
3c3a0b2 in tests/fixtures/parity/vonenet.npz): the kernels agree to float32 rounding, the channel
draws exactly, the noise-free block output to 1e-5. Before this was made to follow VOneNet, the
kernels were the transposes of theirs (the grid's x was the column offset): each filter's bar
orientation mirrored about the diagonal (ori -> pi/2 - ori), so the population's horizontal and
vertical bins (66 and 77 of De Valois's 246 cells) were swapped and the oblique ones not; and both
filters of a pair read one channel.

Stochasticity (VOneNet's ``noise_mode='neuronal'``), with s = ``noise_scale``, l = ``noise_level``:

    r = s * a + l;   r <- r + sqrt(relu(r) + 1e-4) * N(0, 1);   output = relu((r - l) / s)

so for a well-driven unit the variance is (s a + l) / s^2 = a / s + l / s^2: proportional to the
mean (Poisson-like, Fano factor 1/s in the block's units) on top of a small floor. The noise is
drawn from torch's global generator (``torch.manual_seed`` controls it) and is active in train
*and* eval mode, as in VOneNet: the stochastic front end is part of the model at test time, so
predictions, similarity scores and gradients for attacks vary between passes.
``noise: false`` (or :meth:`VOneBlock.set_noise`) makes the block deterministic.

Parameter distributions (``parameters="v1"``), one independent draw per channel from a numpy
generator seeded by ``seed`` (the same as VOneNet's ``generate_gabor_param``, from its tabulated
data; within a histogram bin values are uniform on the bin's scale):

- orientation: De Valois, Yund & Hepler 1982 (Vision Res 22:531), preferred orientations of macaque
  V1 cells in four 45-degree bins centred on 0, 45, 90, 135 degrees with counts 66, 49, 77, 54
  (more cells near the cardinal axes), uniform within a bin.
- peak spatial frequency: De Valois, Albrecht & Thorell 1982 (Vision Res 22:545), histogram over
  the bin edges 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8, 11.2 cycles/degree with counts 4, 4, 8,
  25, 32, 26, 28, 12, 8, log2-uniform within a bin; truncated at the last edge <= ``sf_max``
  (VOneNet's default 6 cycles/degree keeps 0.5 .. 5.6) and at the image's Nyquist frequency.
- envelope sizes nx = sigma_x * f, ny = sigma_y * f (envelope SDs in periods of the carrier):
  Ringach 2002 (J Neurophysiol 88:455), the joint (nx, ny) histogram of simple-cell Gabor fits on
  log10-spaced bin edges 10^-1 .. 10^0.2 (6 edges), as tabulated by Dapello et al. 2020; nx from
  its marginal, ny from the row of nx's bin, log10-uniform within a bin.
- nx and the spatial frequency are drawn through a Gaussian copula with correlation ``sf_corr``
  (VOneNet: 0.75; cells tuned to higher frequencies have more cycles under the envelope, i.e.
  narrower octave bandwidths; VOneNet's code cites Schiller, Finlay & Volman 1976).
- phase: uniform on [0, 2 pi).
- input channels: see above (torch's generator, not numpy's).

``parameters="uniform"`` (the control, as VOneNet's ``rand_param``): orientation uniform on
[0, 180) degrees, spatial frequency log-uniform over the same (truncated) support, nx and ny
independently log-uniform on [10^-1, 10^0.2], no correlation, phase uniform: same supports,
none of the structure.

From degrees to pixels: the image is taken to span ``visual_degrees`` (VOneNet: 224 px = 8 deg,
28 px/deg), so pixels per degree = ``image_size / visual_degrees``, f [cycles/px] = f [cycles/deg] /
(px/deg), sigma [px] = n / f [cycles/px]. The default 2 degrees for a 32 px image (16 px/deg) maps
0.5 .. 5.6 cycles/deg onto periods of 32 .. 2.9 px: the lowest frequency spans the image, the
highest stays below the Nyquist limit (0.35 < 0.5 cycles/px). Note that a kernel truncates every
envelope wider than about kernel_size / 4 (at 16 px/deg and kernel_size 7, most low-frequency
filters); VOneNet's kernel (25 px at 28 px/deg, 0.9 deg) truncates too, and ``kernel_size: 15``
would span the same 0.9 deg at 16 px/deg.

Output: [N, simple_channels + complex_channels, ceil(H / stride), ceil(W / stride)], non-negative,
the tap ``"vone"``. :class:`VOneFront` feeds it through a 1x1 bottleneck convolution (trained,
Kaiming-normal fan-out init, no bias, as VOneNet) to a backbone built with ``in_channels =
bottleneck``. As in the rest of the package the classifier normalises images with the training
set's mean and std *before* the block (VOneNet normalises with mean 0.5, std 0.5).
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np
import torch
from scipy.special import ndtr
from torch import nn
from torch.nn import functional as F

from ..layer_names import VONE_OPTIONS, VONE_TAP, vone_enabled
from .random_draws import normal_like

# ---- empirical distributions (see the module docstring for the sources) ----
ORIENTATION_BIN_CENTRES_DEG = np.array([0.0, 45.0, 90.0, 135.0])
ORIENTATION_COUNTS = np.array([66, 49, 77, 54], dtype=float)           # De Valois, Yund & Hepler 1982
SF_EDGES_CPD = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2])
SF_COUNTS = np.array([4, 4, 8, 25, 32, 26, 28, 12, 8], dtype=float)    # De Valois, Albrecht & Thorell 1982
N_EDGES = np.logspace(-1, 0.2, 6)                                       # Ringach 2002: nx, ny bin edges
NXNY_COUNTS = np.array([[2, 0, 1, 0, 0],                                # rows: nx bins, columns: ny bins
                        [8, 9, 4, 1, 0],
                        [1, 2, 19, 17, 3],
                        [0, 0, 1, 7, 4],
                        [0, 0, 0, 0, 0]], dtype=float)

VONE_DEFAULTS: dict = {
    "parameters": "v1",       # v1 | uniform
    "noise": True,
    "simple_channels": 16,
    "complex_channels": 16,
    "kernel_size": 7,
    "stride": 1,
    "visual_degrees": 2.0,
    "image_size": None,       # None: the classifier's input_size, else 32
    "seed": 0,
    "bottleneck": 16,
    "sf_corr": 0.75,
    "sf_max": 6.0,            # cycles/degree
    "k_exc": 25.0,
    "noise_scale": 0.35,
    "noise_level": 0.07,
    "quadrature_channels": "independent",  # independent (VOneNet's code) | shared (its issue 20's fix)
}
assert set(VONE_DEFAULTS) == VONE_OPTIONS, "layer_names.VONE_OPTIONS and models.vone.VONE_DEFAULTS differ"

DEFAULT_IMAGE_SIZE = 32
_NOISE_EPS = 1e-4
_ENERGY_EPS = 1e-12  # keeps the complex cells' gradient finite where both quadrature responses are 0
QUADRATURE_CHANNELS = ("independent", "shared")


def _inverse_cdf(u: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Quantile function of a histogram (``counts`` over ``edges``), piecewise linear in the edges'
    scale, i.e. uniform within a bin; pass log edges for log-uniform bins."""
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    return np.interp(u, cdf, edges)


def sf_support_cpd(pixels_per_degree: float, sf_max: float) -> np.ndarray:
    """The spatial-frequency bin edges kept: those <= min(sf_max, Nyquist) (at least two)."""
    cap = min(float(sf_max), 0.5 * pixels_per_degree)
    edges = SF_EDGES_CPD[SF_EDGES_CPD <= cap + 1e-12]
    if len(edges) < 2:
        raise ValueError(f"vone: no spatial-frequency bin below {cap:g} cycles/degree (sf_max {sf_max:g}, "
                         f"Nyquist {0.5 * pixels_per_degree:g}); lower visual_degrees or raise sf_max/image_size")
    return edges


def sample_gabor_parameters(n: int, seed: int, parameters: str = "v1", pixels_per_degree: float = 16.0,
                            sf_max: float = 6.0, sf_corr: float = 0.75) -> dict[str, np.ndarray]:
    """Per-channel Gabor parameters: ``orientation`` (rad in [0, pi), VOneNet's ``theta``: the bars'
    orientation, counter-clockwise from horizontal), ``theta`` (rad in (-pi/2, pi/2], the carrier's
    wave-vector direction in image coordinates, x = column, y = row: pi/2 - orientation),
    ``sf_cpd``, ``sf`` (cycles/px), ``nx``, ``ny`` (envelope SDs in periods), ``sigma_x``,
    ``sigma_y`` (px), ``phase`` (rad). Deterministic in ``seed``; the draws are made in the same
    order for both ``parameters`` kinds. The input channels: :func:`sample_input_channels`."""
    if parameters not in ("v1", "uniform"):
        raise ValueError(f"vone.parameters: unknown {parameters!r} (v1, uniform)")
    if not -1.0 <= sf_corr <= 1.0:
        raise ValueError(f"vone.sf_corr: expected a correlation in [-1, 1], got {sf_corr!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 31]))
    edges = sf_support_cpd(pixels_per_degree, sf_max)
    sf_counts = SF_COUNTS[:len(edges) - 1]
    u_ori, u_ny, z1, z2 = rng.random(n), rng.random(n), rng.standard_normal(n), rng.standard_normal(n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    log_n = np.log10(N_EDGES)
    if parameters == "v1":
        # Orientation: pick a 45-degree bin by the counts, uniform within it (centre +- 22.5).
        ori_edges = np.concatenate([ORIENTATION_BIN_CENTRES_DEG - 22.5, [157.5]])
        ori = _inverse_cdf(u_ori, ori_edges, ORIENTATION_COUNTS) % 180.0
        # nx and sf through a Gaussian copula with correlation sf_corr.
        u_nx = ndtr(z1)
        u_sf = ndtr(sf_corr * z1 + math.sqrt(max(0.0, 1 - sf_corr ** 2)) * z2)
        nx = 10 ** _inverse_cdf(u_nx, log_n, NXNY_COUNTS.sum(axis=1))
        sf_cpd = 2 ** _inverse_cdf(u_sf, np.log2(edges), sf_counts)
        nx_bin = np.clip(np.searchsorted(N_EDGES, nx, side="right") - 1, 0, len(N_EDGES) - 2)
        ny = np.array([10 ** _inverse_cdf(u, log_n, NXNY_COUNTS[b]) for u, b in zip(u_ny, nx_bin)])
    else:
        ori = 180.0 * u_ori
        nx = 10 ** (log_n[0] + (log_n[-1] - log_n[0]) * ndtr(z1))
        ny = 10 ** (log_n[0] + (log_n[-1] - log_n[0]) * u_ny)
        log_sf = np.log2(edges)
        sf_cpd = 2 ** (log_sf[0] + (log_sf[-1] - log_sf[0]) * ndtr(z2))
    sf = sf_cpd / pixels_per_degree
    orientation = np.deg2rad(ori)
    return {"orientation": orientation, "theta": np.pi / 2 - orientation, "sf_cpd": sf_cpd, "sf": sf,
            "nx": nx, "ny": ny, "sigma_x": nx / sf, "sigma_y": ny / sf, "phase": phase}


def sample_input_channels(n: int, in_channels: int, seed: int,
                          quadrature_channels: str = "independent") -> tuple[np.ndarray, np.ndarray]:
    """The input channel of each of ``n`` q0 filters and of its q1 partner, as VOneNet's
    ``GFB.initialize`` draws them (``torch.randint(0, in_channels, (n,))`` for the q0 bank, then
    again for the q1 bank), from a ``torch.Generator`` seeded with ``seed``; ``shared``: q1 reads
    q0's channel (one draw)."""
    if quadrature_channels not in QUADRATURE_CHANNELS:
        raise ValueError(f"vone.quadrature_channels: unknown {quadrature_channels!r} ({', '.join(QUADRATURE_CHANNELS)})")
    generator = torch.Generator().manual_seed(int(seed))
    q0 = torch.randint(0, in_channels, (n,), generator=generator).numpy()
    q1 = torch.randint(0, in_channels, (n,), generator=generator).numpy() if quadrature_channels == "independent" else q0
    return q0, q1.copy()


def gabor_kernels(orientation, sf, sigma_x, sigma_y, phase, kernel_size: int) -> np.ndarray:
    """Gabor kernels [K, kernel_size, kernel_size] (float64), one per parameter set: VOneNet's
    ``utils.gabor_kernel(frequency=sf, sigma_x, sigma_y, theta=orientation, offset=phase,
    ks=kernel_size)``, whose grid's x is the row offset; see the module docstring."""
    r = kernel_size // 2
    dy, dx = np.meshgrid(np.arange(-r, r + 1, dtype=float), np.arange(-r, r + 1, dtype=float), indexing="ij")
    col = lambda a: np.asarray(a, dtype=float)[:, None, None]
    orientation, sf, sigma_x, sigma_y, phase = map(col, (orientation, sf, sigma_x, sigma_y, phase))
    u = np.cos(orientation) * dy + np.sin(orientation) * dx
    v = -np.sin(orientation) * dy + np.cos(orientation) * dx
    envelope = np.exp(-0.5 * (u ** 2 / sigma_x ** 2 + v ** 2 / sigma_y ** 2)) / (2 * np.pi * sigma_x * sigma_y)
    return envelope * np.cos(2 * np.pi * sf * u + phase)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"vone.{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(name: str, value, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (positive and not value > 0):
        raise ValueError(f"vone.{name}: expected a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


class VOneBlock(nn.Module):
    """Fixed Gabor filter bank (simple and complex cells) with Poisson-like noise; see the module
    docstring. ``out_channels = simple_channels + complex_channels``."""

    def __init__(self, in_channels: int, image_size: int = DEFAULT_IMAGE_SIZE, simple_channels: int = 16,
                 complex_channels: int = 16, kernel_size: int = 7, stride: int = 1, parameters: str = "v1",
                 noise: bool = True, noise_level: float = 0.07, noise_scale: float = 0.35, k_exc: float = 25.0,
                 seed: int = 0, visual_degrees: float = 2.0, sf_max: float = 6.0, sf_corr: float = 0.75,
                 quadrature_channels: str = "independent"):
        super().__init__()
        in_channels = _check_int("in_channels", in_channels, 1)
        self.image_size = _check_int("image_size", image_size, 1)
        self.simple_channels = _check_int("simple_channels", simple_channels, 0)
        self.complex_channels = _check_int("complex_channels", complex_channels, 0)
        if self.simple_channels + self.complex_channels < 1:
            raise ValueError("vone: simple_channels + complex_channels must be at least 1")
        self.kernel_size = _check_int("kernel_size", kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"vone.kernel_size: expected an odd size (a centred kernel), got {kernel_size}")
        self.stride = _check_int("stride", stride, 1)
        if not isinstance(noise, bool):
            raise ValueError(f"vone.noise: expected true or false, got {noise!r}")
        self.noise = noise
        self.noise_level = _check_number("noise_level", noise_level, positive=False)
        if self.noise_level < 0:
            raise ValueError(f"vone.noise_level: expected a number >= 0, got {noise_level!r}")
        self.noise_scale = _check_number("noise_scale", noise_scale)
        self.k_exc = _check_number("k_exc", k_exc)
        self.visual_degrees = _check_number("visual_degrees", visual_degrees)
        self.parameter_kind = parameters  # not "parameters": nn.Module.parameters()
        self.seed = _check_int("seed", seed, 0)
        self.in_channels = in_channels
        self.pixels_per_degree = self.image_size / self.visual_degrees

        n = self.out_channels
        p = sample_gabor_parameters(n, self.seed, parameters, self.pixels_per_degree,
                                    _check_number("sf_max", sf_max), _check_number("sf_corr", sf_corr, False))
        self.quadrature_channels = quadrature_channels
        channel_q0, channel_q1 = sample_input_channels(n, in_channels, self.seed, quadrature_channels)
        args = (p["orientation"], p["sf"], p["sigma_x"], p["sigma_y"])
        q0 = np.zeros((n, in_channels, self.kernel_size, self.kernel_size))
        q1 = np.zeros_like(q0)
        q0[np.arange(n), channel_q0] = gabor_kernels(*args, p["phase"], self.kernel_size)
        q1[np.arange(n), channel_q1] = gabor_kernels(*args, p["phase"] + np.pi / 2, self.kernel_size)
        self.register_buffer("weight_q0", torch.as_tensor(q0, dtype=torch.float32))
        self.register_buffer("weight_q1", torch.as_tensor(q1, dtype=torch.float32))
        # The sampled parameters travel with the filters (small; checkpoints describe themselves).
        # theta: the wave-vector direction in image coordinates (see the module docstring).
        for name in ("theta", "sf", "sf_cpd", "nx", "ny", "sigma_x", "sigma_y", "phase"):
            self.register_buffer(name, torch.as_tensor(p[name], dtype=torch.float32))
        self.register_buffer("input_channel", torch.as_tensor(channel_q0, dtype=torch.long))  # q0's (simple cells')

    @property
    def out_channels(self) -> int:
        return self.simple_channels + self.complex_channels

    @property
    def input_channel_q1(self) -> torch.Tensor:
        """The input channel each q1 filter reads (read off the filters, so a loaded checkpoint's)."""
        return (self.weight_q1.abs().sum(dim=(2, 3)) > 0).float().argmax(1)

    @property
    def orientation(self) -> torch.Tensor:
        """Each filter's bar orientation (rad in [0, pi), counter-clockwise from horizontal as
        displayed; VOneNet's ``theta``): pi/2 - ``theta`` modulo pi."""
        return torch.remainder(math.pi / 2 - self.theta, math.pi)

    def set_noise(self, noise: bool) -> "VOneBlock":
        """Turn the stochastic part on or off (it does not follow train/eval mode)."""
        self.noise = bool(noise)
        return self

    def gabor_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Noise-free simple and complex cell responses (scaled by ``k_exc``), non-negative."""
        pad = self.kernel_size // 2
        s = self.simple_channels
        q0 = F.conv2d(x, self.weight_q0, None, self.stride, pad)
        simple = F.relu(q0[:, :s])
        if self.complex_channels:
            q1 = F.conv2d(x, self.weight_q1[s:], None, self.stride, pad)
            energy = torch.sqrt(q0[:, s:] ** 2 + q1 ** 2 + _ENERGY_EPS) / math.sqrt(2.0)
            out = torch.cat([simple, energy], 1)
        else:
            out = simple
        return self.k_exc * out

    def add_noise(self, a: torch.Tensor) -> torch.Tensor:
        """Poisson-like noise (variance ~ mean / noise_scale), then rectification."""
        r = self.noise_scale * a + self.noise_level
        r = r + torch.sqrt(F.relu(r) + _NOISE_EPS) * normal_like(r)
        return F.relu((r - self.noise_level) / self.noise_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gabor_responses(x)
        return self.add_noise(a) if self.noise else a

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, simple={self.simple_channels}, complex={self.complex_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, parameters={self.parameter_kind!r}, "
                f"noise={self.noise}, px_per_degree={self.pixels_per_degree:g}, seed={self.seed}, "
                f"quadrature_channels={self.quadrature_channels!r}")


class VOneFront(nn.Module):
    """VOneBlock -> 1x1 bottleneck conv -> backbone (built with ``in_channels = bottleneck``).
    Taps: ``"vone"`` (the block's output) and the backbone's."""

    def __init__(self, block: VOneBlock, backbone: nn.Module, bottleneck: int):
        super().__init__()
        self.vone = block
        self.bottleneck = nn.Conv2d(block.out_channels, _check_int("bottleneck", bottleneck, 1), 1, bias=False)
        nn.init.kaiming_normal_(self.bottleneck.weight, mode="fan_out", nonlinearity="relu")
        self.backbone = backbone
        self.tap_names = (VONE_TAP, *backbone.tap_names)

    def forward_taps(self, x: torch.Tensor, taps=(), features_only: bool = False
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = self.vone(x)
        if features_only and set(taps) <= {VONE_TAP}:
            return None, {VONE_TAP: v}
        logits, feats = self.backbone.forward_taps(self.bottleneck(v), [t for t in taps if t != VONE_TAP],
                                                   features_only=features_only)
        if VONE_TAP in taps:
            feats = {VONE_TAP: v, **feats}
        return logits, feats

    def forward(self, x):
        return self.forward_taps(x)[0]


def vone_options(value, input_size: int | None = None) -> dict | None:
    """The ``vone`` model option with defaults filled in: None when off (null / false), else a dict
    of every key in :data:`VONE_DEFAULTS`; ``image_size`` defaults to ``input_size`` or 32."""
    if not vone_enabled(value):
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"model.vone: expected a mapping of options, true, false or null, got {value!r}")
    unknown = sorted(set(value) - VONE_OPTIONS)
    if unknown:
        raise ValueError(f"model.vone.{unknown[0]}: not an option (options: {sorted(VONE_OPTIONS)})")
    opts = {**VONE_DEFAULTS, **value}
    if opts["image_size"] is None:
        opts["image_size"] = input_size if input_size is not None else DEFAULT_IMAGE_SIZE
    return opts


def vone_front(backbone_constructor, num_classes: int, in_channels: int, vone, input_size: int | None = None,
               **backbone_options) -> VOneFront:
    """A :class:`VOneFront` around ``backbone_constructor(num_classes, bottleneck, **options)``."""
    opts = vone_options(vone, input_size)
    bottleneck = _check_int("bottleneck", opts.pop("bottleneck"), 1)
    block = VOneBlock(in_channels, **opts)
    backbone = backbone_constructor(num_classes, bottleneck, **backbone_options)
    return VOneFront(block, backbone, bottleneck)
