"""White-box accuracy under fixed-budget PGD attacks (Dapello, Marques et al. 2020, Fig. 1).

What is measured
----------------
For each norm (L-infinity, L2, L1) and each budget ``epsilon`` the accuracy of the model on
images perturbed by an *untargeted* projected-gradient-descent attack (Madry et al. 2018) that
maximises the cross-entropy of the true label inside the ball ``||x_adv - x||_p <= epsilon``
intersected with the pixel box [0, 1]. Budgets are in [0, 1] pixel units over all C*H*W values
(the :class:`~neurobias.models.Classifier` normalises internally, so the attack moves raw
pixels, exactly like :mod:`.adversarial`). Dapello et al. summarise a model by its *white-box
accuracy*: the mean of these accuracies over norms and budgets; :func:`white_box_records` writes
the per-budget accuracies, the per-norm means and that overall mean as tidy rows.

Attack (Foolbox 3.3.4)
----------------------
``foolbox.attacks.LinfPGD``, ``L2PGD`` and ``L1PGD`` (aliases of
``Linf/L2/L1ProjectedGradientDescentAttack``), with a random start inside the ball
(``random_start=True``), ``steps`` iterations and step ``rel_stepsize * epsilon``. Each step
normalises the gradient (sign for L-infinity, unit L2 / unit L1 norm otherwise), projects back
onto the ball and clips to [0, 1]; the *last* iterate is returned (not the best one). The
returned images are re-clipped to the budget (Foolbox's ``clip_perturbation``), so
``||x_adv - x||_p <= epsilon`` up to float32 rounding (``tests/test_pgd.py`` checks
``<= epsilon * (1 + 1e-6) + 1e-5``).

* ``rel_stepsize=None`` keeps Foolbox's defaults: 0.01/0.3 (= 1/30) for L-infinity, 0.025 for
  L2 and L1. With few steps those are small: the whole walk is ``steps * rel_stepsize``
  epsilons (20 steps: 0.67 eps for L-infinity, 0.5 eps for L2/L1), so the attack leans on its
  random start. On the synthetic problem of ``tests/test_pgd.py`` (20 steps, L-infinity
  epsilon 0.5, which flips every image) the defaults leave 24 % of the images correct and
  ``rel_stepsize = 2.5 / steps`` none; at epsilon 0.2, 97 % vs 66 %. Dapello et al.'s public
  evaluation used step ``epsilon / 4`` for 64 steps; the usual rule for short PGD runs is
  ``rel_stepsize = 2.5 / steps`` (Madry et al. 2018). Either is a config value; see the
  recommended defaults below.
* The L1 attack is Foolbox's dense one (gradient divided by its L1 norm, then rescaling onto
  the L1 ball), the same L1 steepest-ascent step as ART's ``ProjectedGradientDescent(norm=1)``
  that Dapello et al.'s code used. It is a weak L1 attack compared with sparse ones (e.g.
  SLIDE / APGD-L1), which is fine for comparing models with one fixed attack, not for
  absolute L1 robustness claims.
* Reproducibility: the random start is drawn from torch's global generator, reseeded as
  ``torch.manual_seed`` does from ``(seed, norm, epsilon, first image of the batch)`` before
  every batch inside :func:`~neurobias.seeding.forked_global_rng`, so the caller's RNG state is
  left untouched and a record does not depend on which other budgets were evaluated. Identical
  results need the same ``seed``, ``batch_size`` and device (on CUDA, non-deterministic kernels
  may still change low-order bits).
* Same images for every model: the subset of the test split comes from
  :func:`.adversarial.select_images` (``np.random.default_rng`` seeded by the *evaluation*
  ``seed`` only), the same subset the minimal-perturbation evaluation attacks, so arms, seeds
  and evaluations can be compared image by image.
* ``epsilon == 0`` is not attacked: its record is the clean accuracy of the same images.

Stochastic models (expectation over transformation)
---------------------------------------------------
A model with noise in its forward pass in eval mode (e.g. a VOneBlock-style Poisson-like noise
layer) gives a different gradient on every call, which makes single-sample PGD look stronger
defended than it is (Athalye, Carlini & Wagner 2018). With ``eot_samples = k > 1`` (the caller
decides with :func:`is_stochastic`; Dapello et al.'s ``adv_evaluate.py`` defaults to k = 8 gradient
samples per step, the example in their README uses k = 10):

* **Attack**: PGD attacks :class:`ExpectationOverNoise` ``(model, k)``, whose forward runs the
  model k times and returns ``log(mean_s softmax(model_s(x)))``, the log-probabilities of the
  model's *expected* prediction (probabilities are averaged, not logits: the mean of softmax
  outputs is the model's expected output distribution and a valid distribution, so Foolbox's
  cross-entropy on the wrapper is exactly ``-log E_s[p_s(y|x)]``; averaged logits are not the
  expectation of anything the model outputs and their scale varies between noise draws). The
  gradient of that loss is ``-(1 / pbar_y) * mean_s grad p_s(y|x)``: the average over the k noise
  samples of the gradient of the true-class probability, times a positive per-image factor
  that PGD's step normalisation (sign / unit norm) removes -- so each step follows the
  noise-averaged gradient. (ART's ``EnsembleClassifier`` over k copies of the same stochastic
  model, which Dapello et al.'s code used, averages per-sample cross-entropy gradients,
  ``mean_s grad(-log p_s(y|x))``, i.e. it weights the samples by ``1 / p_s(y|x)`` instead of
  equally; both are EOT estimators and coincide for deterministic models.)
* **Evaluation**: the accuracy of an adversarial image is the mean over k fresh single forward
  passes of ``argmax == label`` -- the *expected* accuracy of the stochastic model as deployed
  (one noise draw per prediction), the quantity Dapello et al.'s code measured with one
  stochastic pass per image; averaging k passes only lowers its variance. A majority vote or
  the argmax of the averaged probabilities would score a different, derandomised classifier.
* Memory: the wrapper keeps k autograd graphs per batch; lower ``batch_size`` if needed.

Budgets: Dapello et al. and 32x32 images
----------------------------------------
Dapello et al. (2020) attack 224x224x3 ImageNet images (d = 150,528 values in [0, 1]) with
"small" budgets per norm, e.g. L-infinity 1/1020 and 1/255, L2 0.15 and 0.6, L1 40 and 160, and
report white-box accuracy averaged over norms and budgets. To ask the same question of 32x32x3
inputs (d = 3,072, 49 times fewer values), keep the *per-pixel* size of a dense perturbation
fixed: an L-infinity budget is per-pixel already and is kept; a dense perturbation of per-pixel
size delta has L2 norm ``delta * sqrt(d)`` and L1 norm ``delta * d``, so L2 budgets scale by
``sqrt(3072 / 150528) = 1/7`` and L1 budgets by ``1/49``. (The same factors come out if one
asks which 32x32 perturbation, upsampled 7x by pixel repetition to 224x224, has the paper's
norm.) Recommended config defaults for 32x32 inputs (the perturbation is measured on the
32x32 input even when the classifier upsamples internally with ``input_size``):

====== ===================== =============================
norm   Dapello (224x224)     32x32 default
====== ===================== =============================
linf   1/1020, 1/255         0.00098, 0.0039 (1/1020, 1/255)
l2     0.15, 0.6             0.0214, 0.0857 (0.15/7, 0.6/7)
l1     40, 160               0.816, 3.27 (40/49, 160/49)
====== ===================== =============================

with ``steps = 20`` and ``rel_stepsize = 0.125`` (2.5 / steps) for a CPU budget, or
``steps = 64`` and ``rel_stepsize = 0.25`` to match Dapello et al.'s code. These budgets were
chosen by Dapello et al. so that standard ImageNet CNNs sit between floor and ceiling; a study
on other data should check that its baseline arm's white-box accuracy is neither ~0 nor equal
to clean accuracy, and rescale all three norms by one common factor if it is.

Sources: Dapello, Marques, Schrimpf, Geiger, Cox & DiCarlo (2020), "Simulating a primary visual
cortex at the front of CNNs improves robustness to image perturbations", NeurIPS 2020 (bioRxiv
10.1101/2020.06.16.154542); their evaluation script ``adv_evaluate.py`` in
github.com/dicarlolab/vonenet (pull request #12: ART ``ProjectedGradientDescent``, 64
iterations, step ``eps/4``, k gradient samples through an ``EnsembleClassifier``, final
accuracy from one stochastic forward pass, and by default ``num_random_init=0``, i.e. PGD
starts at the clean image where this module starts at a random point of the ball); issue #21 of that repository (L-infinity 1/1020, 64 iterations, 8 EOT
samples); Athalye, Engstrom, Ilyas & Kwok (2018) for EOT; Foolbox 3.3.4
``attacks/gradient_descent_base.py`` for the attack. The budget list above follows the
paper's appendix as summarised in this project's issue; the scaling to 32x32 is ours.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..seeding import forked_global_rng
from .adversarial import select_images

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*scipy\.ndimage.*")
    import foolbox as fb

__all__ = [
    "EVALUATION",
    "NORMS",
    "RECORD_KEYS",
    "DEFAULT_STEPS",
    "DEFAULT_EPSILONS_32",
    "ExpectationOverNoise",
    "is_stochastic",
    "make_pgd",
    "pgd_adversarials",
    "pgd_accuracy",
    "white_box_records",
]

#: ``evaluation`` value of the tidy rows.
EVALUATION = "white_box"
#: Supported norms, in reporting order.
NORMS: tuple[str, ...] = ("linf", "l2", "l1")
#: Keys of each :func:`pgd_accuracy` record.
RECORD_KEYS: tuple[str, ...] = ("norm", "epsilon", "accuracy", "n")
#: PGD iterations unless configured.
DEFAULT_STEPS = 20
#: Dapello et al.'s low/high budgets rescaled to 32x32x3 inputs (see the module docstring).
DEFAULT_EPSILONS_32: dict[str, tuple[float, float]] = {
    "linf": (1 / 1020, 1 / 255),
    "l2": (0.15 / 7, 0.6 / 7),
    "l1": (40 / 49, 160 / 49),
}

_ATTACKS = {"linf": fb.attacks.LinfPGD, "l2": fb.attacks.L2PGD, "l1": fb.attacks.L1PGD}
_NORM_CODE = {"linf": 0, "l2": 2, "l1": 1}


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def make_pgd(norm: str, steps: int = DEFAULT_STEPS, rel_stepsize: float | None = None):
    """Foolbox's untargeted PGD for ``norm`` with a random start; ``rel_stepsize`` None keeps
    Foolbox's default for that norm (1/30 for linf, 0.025 for l2 and l1)."""
    cls = _ATTACKS[_check_norm(norm)]
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    kwargs = {"steps": int(steps), "random_start": True}
    if rel_stepsize is not None:
        if not rel_stepsize > 0:
            raise ValueError(f"rel_stepsize must be positive, got {rel_stepsize}")
        kwargs["rel_stepsize"] = float(rel_stepsize)
    return cls(**kwargs)


class ExpectationOverNoise(nn.Module):
    """``log(mean_s softmax(model(x)))`` over ``samples`` stochastic forward passes.

    The output is a valid logit vector (its softmax is the averaged probability vector, its
    argmax the expected prediction), so Foolbox's cross-entropy on it is ``-log E_s[p_s(y|x)]``
    and its gradient the noise-averaged gradient of the true-class probability (module
    docstring). The passes run one after another, so under a fixed torch seed the result equals
    the mean of ``samples`` consecutive calls of ``model``.
    """

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        if int(samples) < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.model = model
        self.samples = int(samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(self.model(x), dim=1) for _ in range(self.samples)])
        return torch.logsumexp(logp, dim=0) - math.log(self.samples)

    def extra_repr(self) -> str:
        return f"samples={self.samples}"


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def is_stochastic(model: nn.Module, x: torch.Tensor | None = None, *, rtol: float = 1e-5,
                  atol: float = 1e-6) -> bool:
    """True if two forward passes of ``model`` in eval mode on the same input differ.

    ``x`` defaults to two fixed random 32x32 images with the channel count of a
    :class:`~neurobias.models.Classifier` (its ``mean`` buffer), else 3, on the model's device.
    Outputs count as different beyond ``torch.allclose(rtol, atol)``, so non-deterministic GPU
    kernels do not make a deterministic model stochastic. The caller's RNG state and the model's
    train/eval mode are restored. Dropout is off in eval mode and does not count.
    """
    device = _device_of(model)
    if x is None:
        mean = getattr(model, "mean", None)
        channels = int(mean.numel()) if isinstance(mean, torch.Tensor) else 3
        x = torch.rand(2, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    was_training = model.training
    model.eval()
    try:
        with forked_global_rng(device):
            a, b = model(x), model(x)
    finally:
        model.train(was_training)
    return not torch.allclose(a, b, rtol=rtol, atol=atol)


def _batch_seed(seed: int, norm: str, epsilon: float, start: int) -> int:
    eps_bits = int(np.float64(epsilon).view(np.uint64))
    ss = np.random.SeedSequence([int(seed), _NORM_CODE[norm], eps_bits, int(start), 0x96D])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def pgd_adversarials(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, epsilon: float,
                     steps: int = DEFAULT_STEPS, rel_stepsize: float | None = None,
                     eot_samples: int = 1, seed: int | None = None) -> torch.Tensor:
    """PGD-perturbed copies of one batch ``x`` (float in [0, 1], ``[B, C, H, W]``, on the model's
    device) with labels ``y``: ``||x_adv - x||_p <= epsilon`` (float32 rounding aside) and
    ``x_adv`` in [0, 1]. ``eot_samples > 1`` attacks :class:`ExpectationOverNoise`.

    ``seed`` given: torch's generators are reseeded with it inside
    :func:`~neurobias.seeding.forked_global_rng` (the caller's RNG state is kept); None: the random
    start uses the current global state.
    ``epsilon == 0`` returns ``x`` unchanged.
    """
    _check_norm(norm)
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon}")
    x = x.detach()
    if epsilon == 0:
        return x.clone()
    attack = make_pgd(norm, steps, rel_stepsize)
    target = ExpectationOverNoise(model, eot_samples).eval() if eot_samples > 1 else model
    was_training = model.training
    model.eval()
    try:
        fmodel = fb.PyTorchModel(target, bounds=(0.0, 1.0), device=x.device)
        criterion = fb.criteria.Misclassification(y.to(x.device))
        with forked_global_rng(x.device, seed, enabled=seed is not None):
            x_adv = attack.run(fmodel, x, criterion, epsilon=epsilon)
        x_adv = attack.distance.clip_perturbation(x, x_adv, epsilon)
    finally:
        model.train(was_training)
    return x_adv.detach().clamp_(0.0, 1.0)


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int) -> float:
    """Number of correct predictions, averaged over ``samples`` forward passes."""
    hits = sum(int((model(x).argmax(1) == y).sum()) for _ in range(samples))
    return hits / samples


def pgd_accuracy(model: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor, *, norm: str,
                 epsilons: Sequence[float], steps: int = DEFAULT_STEPS, rel_stepsize: float | None = None,
                 n_images: int | None = 1000, seed: int = 0, device="cpu", eot_samples: int = 1,
                 batch_size: int = 100, progress: bool = False) -> list[dict]:
    """Accuracy under untargeted PGD, one record per budget.

    Parameters
    ----------
    model
        Classifier taking float images in [0, 1] ``[B, C, H, W]`` and returning logits.
    images_uint8, labels
        The test split: uint8 ``[N, C, H, W]`` and int ``[N]``.
    norm
        ``"linf"``, ``"l2"`` or ``"l1"``.
    epsilons
        Budgets in [0, 1] pixel units over all C*H*W values (``0`` gives clean accuracy).
    steps, rel_stepsize
        PGD iterations and step relative to epsilon (None: Foolbox's default for ``norm``).
    n_images, seed
        Evaluate the seeded subset :func:`.adversarial.select_images` ``(N, n_images, seed)``
        (None: all images); ``seed`` also seeds the attacks' random starts and the noise of
        stochastic models.
    eot_samples
        Stochastic forward passes averaged per gradient and per accuracy (module docstring);
        1 for deterministic models (see :func:`is_stochastic`).
    batch_size
        Images per attack batch (changes the random starts, hence the exact result).

    Returns
    -------
    ``[{"norm", "epsilon", "accuracy", "n"}, ...]`` in the order of ``epsilons``; ``accuracy``
    is the fraction of the ``n`` images whose PGD-perturbed version is classified correctly
    (for ``eot_samples > 1``: averaged over that many passes).
    """
    _check_norm(norm)
    epsilons = [float(e) for e in epsilons]
    bad = [e for e in epsilons if not (math.isfinite(e) and e >= 0)]
    if bad or not epsilons:
        raise ValueError(f"epsilons must be a non-empty list of finite values >= 0, got {epsilons}")
    if int(eot_samples) < 1 or int(batch_size) < 1:
        raise ValueError(f"eot_samples and batch_size must be >= 1, got {eot_samples}, {batch_size}")
    eot_samples, batch_size = int(eot_samples), int(batch_size)
    images_uint8 = torch.as_tensor(images_uint8)
    labels = torch.as_tensor(labels).long()
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise ValueError("images_uint8 must be a uint8 tensor [N, C, H, W]")
    if len(labels) != len(images_uint8):
        raise ValueError(f"{len(images_uint8)} images but {len(labels)} labels")

    was_training = model.training
    model.eval()
    index = select_images(len(images_uint8), n_images, seed)
    records = []
    bar = tqdm(total=len(index) * len(epsilons), desc=f"pgd {norm}", unit="img", disable=not progress)
    try:
        for eps in epsilons:
            correct = 0.0
            for start in range(0, len(index), batch_size):
                idx = index[start:start + batch_size]
                x = (images_uint8[idx].float() / 255.0).to(device)
                y = labels[idx].to(device)
                batch_seed = _batch_seed(seed, norm, eps, int(idx[0]))
                with forked_global_rng(device, batch_seed):
                    x_adv = pgd_adversarials(model, x, y, norm=norm, epsilon=eps, steps=steps,
                                             rel_stepsize=rel_stepsize, eot_samples=eot_samples)
                    correct += _correct(model, x_adv, y, eot_samples)
                bar.update(len(idx))
            records.append({"norm": norm, "epsilon": eps, "accuracy": correct / len(index), "n": int(len(index))})
    finally:
        bar.close()
        model.train(was_training)
    return records


def white_box_records(records: Iterable[dict], *, study: str, arm: str, seed: int) -> list[dict]:
    """Tidy rows (:data:`neurobias.stats.TIDY_COLUMNS`) for one model's PGD records.

    * one row per record: ``evaluation = "white_box"``, ``condition`` = norm, ``level`` =
      epsilon, ``metric = "accuracy"``;
    * one row per norm: ``level = NaN``, ``metric = "mean_accuracy"``, the mean accuracy over
      that norm's budgets with ``epsilon > 0``;
    * one overall row: ``condition = "all"``, ``level = NaN``, ``metric = "white_box_accuracy"``,
      the mean over all (norm, budget) records with ``epsilon > 0`` -- Dapello et al.'s white-box
      accuracy (equal to the mean of the per-norm means when every norm has the same number of
      budgets, as in the paper).

    ``epsilon == 0`` records (clean accuracy) get their ``accuracy`` row but are left out of both
    means. Norms (and the overall row) without a positive budget get no mean row. Norms are
    ordered as in :data:`NORMS`, budgets ascending.
    """
    records = [dict(r) for r in records]
    missing = [k for r in records for k in RECORD_KEYS if k not in r]
    if missing:
        raise ValueError(f"white_box_records: record(s) missing {sorted(set(missing))}")
    for r in records:
        _check_norm(r["norm"])
    base = {"study": study, "arm": arm, "seed": int(seed), "evaluation": EVALUATION}
    ordered = sorted(records, key=lambda r: (NORMS.index(r["norm"]), float(r["epsilon"])))
    rows = [{**base, "condition": r["norm"], "level": float(r["epsilon"]), "metric": "accuracy",
             "value": float(r["accuracy"])} for r in ordered]
    attacked = [r for r in ordered if float(r["epsilon"]) > 0]
    for norm in NORMS:
        values = [float(r["accuracy"]) for r in attacked if r["norm"] == norm]
        if values:
            rows.append({**base, "condition": norm, "level": math.nan, "metric": "mean_accuracy",
                         "value": float(np.mean(values))})
    if attacked:
        rows.append({**base, "condition": "all", "level": math.nan, "metric": "white_box_accuracy",
                     "value": float(np.mean([float(r["accuracy"]) for r in attacked]))})
    return rows
