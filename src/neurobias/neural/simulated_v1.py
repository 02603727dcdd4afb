"""A seeded population of model V1 neurons: the demo's positive control, not biological data.

Each neuron has a Gabor receptive field (position, orientation, spatial frequency, envelope
width, phase). Simple cells are half-wave rectified and squared linear filters; complex cells are
energy models (sum of squares of a quadrature pair, Adelson & Bergen 1985). All drives are divided
by a normalisation pool (the population's mean energy at the same image, Heeger 1992):

    drive_k(x) = E_k(x) / (sigma_n^2 + mean_j E_j(x))
    rate_k(x)  = gain_k * drive_k(x) ** exponent
    response   ~ Poisson(rate_k(x))   independently on every repeat

The population is built to be *noise-robust and informative* (DESIGN.md section 8 shows what a
naive population gives): few neurons with large receptive fields tuned to low spatial
frequencies, so their responses integrate over many pixels and largely ignore pixel noise and the
high-frequency shortcut grating of the synthetic task, while differing between shapes. Whether
that robustness transfers to a CNN is what the workflow measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recording import Recording


@dataclass(frozen=True)
class V1PopulationParams:
    n_neurons: int = 240
    image_size: int = 32
    complex_fraction: float = 0.7
    sf_median: float = 0.09         # cycles/pixel; periods around 11 px on a 32 px image
    sf_spread: float = 0.3          # SD of log spatial frequency
    envelope_periods: float = 0.45  # Gaussian envelope SD in units of the preferred period
    position_margin: float = 0.2    # RF centres kept this fraction of the image away from the border
    normalisation_sigma: float = 0.1
    exponent: float = 0.8
    mean_rate: float = 4.0          # spikes per trial averaged over the population and images


class SimulatedV1:
    """Call :meth:`mean_rates` for noise-free rates, :meth:`record` for a Poisson recording."""

    def __init__(self, params: V1PopulationParams, seed: int):
        self.params = p = params
        rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        k = p.n_neurons
        self.is_complex = rng.random(k) < p.complex_fraction
        self.orientation = rng.uniform(0, np.pi, k)
        self.spatial_frequency = np.exp(np.log(p.sf_median) + p.sf_spread * rng.standard_normal(k))
        self.sigma = p.envelope_periods / self.spatial_frequency
        lo, hi = p.position_margin * p.image_size, (1 - p.position_margin) * p.image_size
        self.centre = rng.uniform(lo, hi, (k, 2))
        self.phase = rng.uniform(0, 2 * np.pi, k)
        self.gain_jitter = np.exp(0.3 * rng.standard_normal(k))
        self.even, self.odd = self._filters()
        self._gain = None

    def _filters(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature Gabor pair per neuron, [K, H*W] each, zero mean and unit L2 norm."""
        size = self.params.image_size
        yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        dy = yy[None] - self.centre[:, 0, None, None]
        dx = xx[None] - self.centre[:, 1, None, None]
        theta = self.orientation[:, None, None]
        u = np.cos(theta) * dx + np.sin(theta) * dy
        envelope = np.exp(-(dx ** 2 + dy ** 2) / (2 * self.sigma[:, None, None] ** 2))
        carrier = 2 * np.pi * self.spatial_frequency[:, None, None] * u + self.phase[:, None, None]
        pair = []
        for wave in (np.cos(carrier), np.sin(carrier)):
            g = (envelope * wave).reshape(len(theta), -1)
            g -= g.mean(axis=1, keepdims=True)
            g /= np.linalg.norm(g, axis=1, keepdims=True)
            pair.append(g.astype(np.float32))
        return pair[0], pair[1]

    def drive(self, images_uint8: np.ndarray) -> np.ndarray:
        """Normalised drive [N, K] to grey images [N, H, W] (contrast relative to mean luminance)."""
        x = images_uint8.reshape(len(images_uint8), -1).astype(np.float32) / 255.0
        x = x - x.mean(axis=1, keepdims=True)
        even, odd = x @ self.even.T, x @ self.odd.T
        energy = np.where(self.is_complex[None], even ** 2 + odd ** 2, np.maximum(even, 0) ** 2)
        pool = energy.mean(axis=1, keepdims=True)
        return energy / (self.params.normalisation_sigma ** 2 + pool)

    def mean_rates(self, images_uint8: np.ndarray) -> np.ndarray:
        """Noise-free firing rates [N, K] (expected spike counts per trial)."""
        d = self.drive(images_uint8) ** self.params.exponent
        if self._gain is None:
            # Gains are fixed once, from the first call's images, so rates are comparable across calls.
            self._gain = self.params.mean_rate * self.gain_jitter / (d.mean(axis=0) + 1e-6)
        return (d * self._gain[None]).astype(np.float32)

    def record(self, images_uint8: np.ndarray, repeats: int, seed: int, test_fraction: float = 0.2,
               missing_fraction: float = 0.0) -> Recording:
        """Poisson responses on ``repeats`` trials per image; the last ``test_fraction`` of the
        images form the test tier (as in Cadena et al. 2019's split). On repeats after the first,
        ``missing_fraction`` of the trials are set to NaN (the first is always kept, so every image
        has a response from every neuron), to exercise the missing-trial path real recordings need."""
        rates = self.mean_rates(images_uint8)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
        responses = rng.poisson(np.repeat(rates[:, None, :], repeats, axis=1)).astype(np.float32)
        if missing_fraction > 0:
            missing = rng.random(responses.shape) < missing_fraction
            missing[:, 0, :] = False  # every image keeps at least one trial per neuron
            responses[missing] = np.nan
        n = len(images_uint8)
        n_test = int(round(test_fraction * n))
        tiers = np.array(["train"] * (n - n_test) + ["test"] * n_test)
        meta = {"source": "simulated_v1", "seed": seed, "repeats": repeats,
                "units": "spike counts per trial", "note": "positive control, not biological data",
                "params": self.params.__dict__}
        return Recording(images_uint8, responses, np.arange(n, dtype=np.int64), tiers, meta)


def simulated_recording(params: dict, archive, config_key: str) -> Recording:
    """The ``simulated`` recording source's builder (declared in :mod:`neurobias.neural`): a
    :class:`SimulatedV1` population recorded on the synthetic stimulus images (nothing to
    download; ``archive`` is unused)."""
    from ..data.synthetic import make_stimulus_images
    size = params["image_size"]
    images = make_stimulus_images(params.get("stimulus_dataset_seed", params["seed"]), params["n_images"], size)
    population = SimulatedV1(V1PopulationParams(image_size=size, **params["population"]), params["seed"])
    return population.record(images, params["repeats"], params["seed"], params["test_fraction"],
                             params["missing_fraction"])
