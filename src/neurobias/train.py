"""One training loop for every arm: cross-entropy plus an optional regulariser.

Resumable by construction. Everything random inside an epoch (the order of training images, the
augmentation, the stimulus batches) is drawn from a generator seeded by ``(seed, epoch)``, and the
learning rate is a function of the epoch alone. So the state at the end of an epoch (weights,
optimiser, regulariser, history) is all that a resumed run needs, and a run killed at any point and
restarted ends with exactly the same history and weights as an uninterrupted one (on CPU).

The checkpoint (:class:`neurobias.checkpoint.Checkpoint`) is written atomically after every epoch
and carries a hash of everything that defines the run; a checkpoint from a different configuration
is ignored, never resumed. A run whose loss stops being finite raises :class:`NonFiniteLossError`
before anything of that epoch is saved: no model.pt, no history.csv, the last good checkpoint kept.

:func:`train_arm` puts together :class:`RunData` (what the run trains on), the network and its
regulariser, :func:`resume_or_start`, and per epoch :class:`EpochStep` (the optimisation steps),
:class:`EpochScores` (the held-out part of the history row) and :class:`~neurobias.checkpoint.BestEpoch`
(the plateau schedule's restore_best).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

from . import __version__
from .checkpoint import CHECKPOINT_NAME, BestEpoch, Checkpoint, digest, run_hash
from .layer_names import default_diagnostic_taps
from .models import (CPU_EVAL_BATCH_SIZE, MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS, build_classifier, channels_last_is_safe,
                     inference_layout, strided_1x1_convolutions_too_narrow)
from .models.io import save_classifier, stimuli_as_inputs
from .registry import regularisers
from .regularisers import MTLRegulariser, build_regulariser, regularised_layers
from .config import with_defaults
from .regularisers.oracle import OracleTraining
from .robustness.label_noise import corrupt_labels


@dataclass
class TrainingConfig:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # lr_schedule: {"kind": "constant"} | {"kind": "cosine"} |
    #              {"kind": "step", "every": 4, "factor": 0.3, "restart_every": 20} (Li 2019)
    lr_schedule: dict = field(default_factory=lambda: {"kind": "constant"})
    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0  # degrees: a random rotation in [-rotation, rotation] (Safarani et al. 2021)
    eval_batch_size: int | str = "auto"  # per-epoch evaluations' batch: :func:`evaluation_batch_size`
    # The fast path (issue 8): bf16 autocast for the network's forward pass where the device has
    # native bf16 (CUDA, or a CPU with AVX512-BF16/AMX), channels_last memory layout. Losses,
    # similarity matrices and evaluation stay in fp32. "fp32" gives the plain reference loop.
    precision: str = "auto"  # auto | bf16 | fp32
    channels_last: bool = True
    # Federer et al. 2020: test-set metrics after every epoch and the generalisation error
    # (training loss - test loss; training loss in eval mode on up to train_eval_images training
    # images, with the labels the network was trained on, corrupted ones included).
    track_test: bool = False
    train_eval_images: int = 5000

    def __post_init__(self):
        # the schedule's own defaults (plateau's factor, patience, ...) come from the config schema
        self.lr_schedule = with_defaults(self.lr_schedule, "study", "training", "lr_schedule")

    def total_epochs(self, oracle=None) -> int:
        """Epochs of the run: an oracle arm pretrains its core first (``oracle.pretrain_epochs``)."""
        return self.epochs + (oracle.pretrain_epochs if oracle is not None else 0)


def training_memory_format(cfg: TrainingConfig, model: torch.nn.Module, device) -> torch.memory_format:
    """The one-model loop's layout of the network and its inputs: channels_last as
    ``training.channels_last`` asks, except on a CPU for a network with a strided 1x1 convolution
    too narrow for oneDNN's channels_last kernel (:func:`strided_1x1_convolutions_too_narrow`),
    which trains in NCHW: the same numbers on every CPU, and never the AVX2 kernel's."""
    safe = cfg.channels_last and channels_last_is_safe(model, device)
    return torch.channels_last if safe else torch.contiguous_format


def describe_memory_format(cfg: TrainingConfig, model: torch.nn.Module, layout: torch.memory_format) -> str:
    """The layout for the job's log, with the reason where it is not the one the config asks for."""
    if layout == torch.channels_last:
        return "channels_last"
    if not cfg.channels_last:
        return "NCHW"
    narrow = strided_1x1_convolutions_too_narrow(model)
    return (f"NCHW (not channels_last: oneDNN's AVX2 kernel miscomputes, or crashes on, the weight gradient of a "
            f"strided 1x1 convolution with fewer than {MIN_CHANNELS_LAST_STRIDED_1X1_INPUTS} input channels, and this "
            f"network has {narrow}; every CPU trains it in NCHW)")


#: A GPU's per-epoch evaluation batch under ``eval_batch_size: auto``.
GPU_EVAL_BATCH_SIZE = 512


def evaluation_batch_size(cfg: TrainingConfig, device) -> int:
    """Images per forward pass of the per-epoch evaluations (validation, ``track_test``):
    ``cfg.eval_batch_size``, or for "auto" :data:`~neurobias.models.CPU_EVAL_BATCH_SIZE` on a CPU
    (the same logits as larger batches for a deterministic network, sooner) and
    :data:`GPU_EVAL_BATCH_SIZE` elsewhere."""
    if cfg.eval_batch_size != "auto":
        return int(cfg.eval_batch_size)
    return CPU_EVAL_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_EVAL_BATCH_SIZE


def resolve_precision(precision: str, device) -> str:
    """'bf16' or 'fp32' for this device: 'auto' picks bf16 only where it is native (emulated bf16
    on an old CPU is slower than fp32)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"training.precision: unknown {precision!r} (auto, bf16, fp32)")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        # native bf16 from compute capability 8.0 (Ampere) on; torch.cuda.is_bf16_supported() also
        # says yes where bf16 is only emulated (a T4, sm_75), where cuDNN has no bf16 convolutions
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    if device.type == "cpu":
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return "fp32"


def autocast(device, precision: str):
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def learning_rate(cfg: TrainingConfig, epoch: int) -> float:
    s = cfg.lr_schedule
    kind = s["kind"]
    if kind == "constant":
        return cfg.lr
    if kind == "plateau":
        raise ValueError("training.lr_schedule: 'plateau' depends on the validation history; "
                         "use learning_rate_and_stop")
    if kind == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    if kind == "step":
        restart = s.get("restart_every") or 0
        e = epoch % restart if restart else epoch
        return cfg.lr * s["factor"] ** (e // s["every"])
    raise ValueError(f"training.lr_schedule.kind: unknown {kind!r} (constant, cosine, step)")


def learning_rate_and_stop(cfg: TrainingConfig, epoch: int, history: list[dict], oracle=None) -> tuple[float, bool]:
    """(learning rate of ``epoch``, whether to stop before it).

    The ``plateau`` schedule (Safarani et al. 2021's adaptive schedule) reads the validation
    accuracy of the epochs so far (``history``, which the checkpoint carries, so a resumed run makes
    the same decisions): the rate is multiplied by ``factor`` whenever the best validation accuracy
    has not improved by more than ``threshold`` for ``patience`` epochs, and training stops once it
    would be reduced for the ``max_decays + 1``-th time. An oracle's second stage starts the
    schedule afresh; its first stage runs its fixed number of epochs (the rate stays at its last
    value instead of stopping). Every other schedule is a function of the epoch within the stage."""
    pretraining = oracle is not None and oracle.in_pretraining(epoch)
    if oracle is not None and not pretraining:
        epoch -= oracle.pretrain_epochs
        history = history[oracle.pretrain_epochs:]
    if cfg.lr_schedule.get("kind") != "plateau":
        # an oracle's first stage runs its own schedule over its own epochs
        stage_cfg = replace(cfg, epochs=oracle.pretrain_epochs) if pretraining else cfg
        return learning_rate(stage_cfg, epoch), False
    s = cfg.lr_schedule
    factor, patience, threshold, max_decays = s["factor"], s["patience"], s["threshold"], s["max_decays"]
    lr, best, bad, decays = cfg.lr, -math.inf, 0, 0
    for row in history[:epoch]:
        if row["val_accuracy"] > best + threshold:
            best, bad = row["val_accuracy"], 0
        else:
            bad += 1
        if bad >= patience:
            decays, bad = decays + 1, 0
            if decays > max_decays:
                return lr, not pretraining
            lr *= factor
    return lr, False


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, 23]).generate_state(1)[0]))


def augment(x: torch.Tensor, cfg: TrainingConfig, g: torch.Generator) -> torch.Tensor:
    """Batched random crop (zero padding), horizontal flip and rotation, no per-sample Python."""
    return apply_augmentation(x, cfg, draw_augmentation(len(x), cfg, g))


def draw_augmentation(n: int, cfg: TrainingConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The random part of :func:`augment` for ``n`` images, drawn from ``g`` in a fixed order
    (crop rows, crop columns, flips, angles). Apart from :func:`apply_augmentation` so that a stack
    of runs (:mod:`neurobias.stacked`) draws each run's from its own generator and applies them all
    in one call."""
    draws = {}
    if cfg.crop_padding:
        draws["oy"] = torch.randint(0, 2 * cfg.crop_padding + 1, (n,), generator=g)
        draws["ox"] = torch.randint(0, 2 * cfg.crop_padding + 1, (n,), generator=g)
    if cfg.flip:
        draws["flip"] = torch.rand(n, generator=g) < 0.5
    if cfg.rotation:
        draws["angle"] = (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotation)
    return draws


def apply_augmentation(x: torch.Tensor, cfg: TrainingConfig, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Crop, flip and rotate the images ``x`` [N,C,H,W] as ``draws`` (:func:`draw_augmentation`) say."""
    if cfg.crop_padding:
        p = cfg.crop_padding
        n, _, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        rows = (draws["oy"][:, None] + torch.arange(h)[None]).to(x.device)
        cols = (draws["ox"][:, None] + torch.arange(w)[None]).to(x.device)
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    if cfg.flip:
        flip = draws["flip"].to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.rotation:
        # one affine grid for the whole batch, sampled on the device (zeros outside the image)
        angle = draws["angle"]
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def batchnorm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def frozen_batchnorm_statistics(bns: list[torch.nn.Module]):
    """Normalise with the batch's own statistics but leave the running estimates of the given
    BatchNorm layers (:func:`batchnorm_layers`, collected once, outside the step loop) untouched.
    The neural pass of an arm with ``neural_batchnorm: freeze`` runs under it."""
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def _tap_channels(model, x: torch.Tensor, taps) -> dict[str, int]:
    """Channels of each tap, from one eval-mode pass over two images (no state changes)."""
    was = model.training
    model.eval()
    try:
        _, feats = model.forward_taps(x, tuple(taps), features_only=True)
    finally:
        model.train(was)
    return {t: int(f.shape[1]) for t, f in feats.items()}


def oracle_inputs(oracle, images_u8, cfg: TrainingConfig, g) -> torch.Tensor:
    """The images of one first-stage step of the oracle, drawn from ``g``: the batch (clean, then
    corrupted) followed by a second corruption of its corrupted images; both versions share one
    crop, flip and rotation (augmented together as channels of one tensor)."""
    first, second, n_corrupted = oracle.views(images_u8, g)
    b, c = first.shape[:2]
    padded = torch.cat([torch.zeros_like(first[: b - n_corrupted]), second])
    both = augment(torch.cat([first, padded], 1).float() / 255.0, cfg, g)
    return torch.cat([both[:, :c], both[b - n_corrupted:, c:]])


def oracle_loss(model, oracle, x: torch.Tensor, y: torch.Tensor, device, precision: str):
    """One first-stage step's loss on :func:`oracle_inputs` ``x`` (the batch's ``len(y)`` images,
    then the second versions): (total, cross-entropy on the batch, consistency, logits)."""
    b = len(y)
    with autocast(device, precision):
        logits_all, feats = model.forward_taps(x, oracle.taps)
    logits = logits_all[:b].float()
    ce = F.cross_entropy(logits, y)
    consistency = oracle.consistency(feats[oracle.taps[0]], b, len(x) - b)
    return ce + oracle.weight * consistency, ce, consistency, logits


def enter_training_mode(model, oracle, epoch: int) -> None:
    """Training mode for ``epoch``'s steps, but an oracle's frozen core (its second stage) stays
    in evaluation mode: its BatchNorm keeps its statistics."""
    model.train()
    if oracle is not None and not oracle.in_pretraining(epoch):
        for block in oracle.core_modules(model):
            block.eval()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-12))


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Logits (fp32, on the CPU) for uint8 images, in eval mode."""
    model.eval()
    return torch.cat([model(inference_layout(images[i:i + batch_size].to(device).float() / 255.0)).float().cpu()
                      for i in range(0, len(images), batch_size)])


def evaluate(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on uint8 images."""
    logits = predict(model, images, batch_size, device)
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())


def epoch_test_metrics(model, test, train_images, train_labels, superclass_of_class, batch_size, device) -> dict:
    """Federer et al. 2020's per-epoch numbers: test loss and accuracy, generalisation error
    (training loss - test loss), and on datasets with superclasses (CIFAR-100) the share of test
    errors whose predicted class lies in the true class's superclass."""
    test_x, test_y = test[0], test[1]
    logits = predict(model, test_x, batch_size, device)
    pred = logits.argmax(1)
    out = {"test_loss": float(F.cross_entropy(logits, test_y)),
           "test_accuracy": float((pred == test_y).float().mean())}
    train_loss, train_acc = evaluate(model, train_images, train_labels, batch_size, device)
    out.update(train_eval_loss=train_loss, train_eval_accuracy=train_acc,
               generalisation_error=train_loss - out["test_loss"])
    if superclass_of_class is not None:
        sup = torch.as_tensor(superclass_of_class)
        same = sup[pred] == sup[test_y]
        wrong = pred != test_y
        out["test_superclass_accuracy"] = float(same.float().mean())
        out["within_superclass_error"] = float((same & wrong).sum() / wrong.sum().clamp_min(1))
    return out


@torch.no_grad()
def heldout_similarity_fit(model, regulariser, taps, stimuli: torch.Tensor, rows: torch.Tensor,
                           target: torch.Tensor, device) -> float:
    """Pearson r between the network's similarity and the diagnostic target on held-out stimuli.

    Uses the regulariser's learned layer weights, or equal weights for an unregularised arm, so
    every arm is scored on the same footing (DESIGN.md section 8's 'does the network fit S')."""
    from .neural.similarity import feature_similarity
    model.eval()
    _, feats = model.forward_taps(stimuli[rows].to(device), taps)
    gamma = getattr(regulariser, "gamma", None)
    if gamma is None:
        gamma = torch.full((len(taps),), 1 / len(taps))
    s = sum(gamma[i].to(device) * feature_similarity(feats[t]) for i, t in enumerate(taps))
    iu = torch.triu_indices(len(rows), len(rows), offset=1)
    host_rows = rows.cpu()  # the held-out block only to the device, not the whole matrix every epoch
    t = target[host_rows][:, host_rows].to(device)
    return _pearson(s[iu[0], iu[1]], t[iu[0], iu[1]])


# -- the run's data ---------------------------------------------------------------------------------
@dataclass
class RunData:
    """Everything one run trains on and is scored with, on the host.

    Splits: uint8 images [N,C,H,W] and int64 labels; ``train_y`` holds the labels as trained
    (corrupted where the arm asks for label noise). Stimuli: grey images [M,H,W] uint8 with their
    tiers ('train'/'test'); ``target``: the arm's target (None for an unregularised arm);
    ``diagnostic_target``: the matrix every arm's held-out fit is scored against; ``responses``: the
    recorded responses an MTL head is scored against."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list
    stimuli: np.ndarray
    stimulus_tiers: np.ndarray
    target: np.ndarray | None
    diagnostic_target: np.ndarray
    test: tuple | None = None
    superclass_of_class: list[int] | None = None
    responses: np.ndarray | None = None

    @classmethod
    def prepare(cls, *, train, val, test, stimuli, stimulus_tiers, target, diagnostic_target,
                superclass_of_class, responses, label_noise: float | None, seed: int) -> "RunData":
        (train_x, train_y, classes), (val_x, val_y, _) = train, val
        if label_noise:
            train_y, _ = corrupt_labels(train_y, float(label_noise), len(classes), seed)
        return cls(train_x, train_y, val_x, val_y, classes, stimuli, stimulus_tiers, target, diagnostic_target,
                   test, superclass_of_class, responses)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def size(self) -> int:
        return self.train_x.shape[-1]

    def stimulus_rows(self, tier: str) -> np.ndarray:
        return np.flatnonzero(self.stimulus_tiers == tier)

    def digests(self, track_test: bool) -> list:
        """The data's part of the run's spec: hashes of the bytes (a shuffled target has the same
        sum as the real one)."""
        arrays = (self.train_x, self.train_y, self.val_x, self.val_y, self.stimuli, self.stimulus_tiers,
                  self.target, self.diagnostic_target, self.responses)
        tracked = [digest(self.test[0]), digest(self.test[1]), self.superclass_of_class] if track_test else []
        return [digest(a) for a in arrays] + tracked


def run_spec(data: RunData, arm: dict, model_cfg: dict, training: TrainingConfig, seed: int, precision: str,
             context: dict | None, engine: str = "sequential") -> dict:
    """Everything that defines the run, data included, so a checkpoint of any other run is never
    resumed. ``engine``: a stacked run (:mod:`neurobias.stacked`) differs from a one-model run in
    its last bits, so neither resumes the other's checkpoint."""
    spec = {"arm": arm, "model": model_cfg, "training": asdict(training), "seed": seed,
            "package": __version__, "precision": precision,
            "context": {k: v for k, v in (context or {}).items() if k != "responses"},
            "data": data.digests(training.track_test)}
    return spec if engine == "sequential" else {**spec, "engine": engine}


# -- the network, its regulariser and their optimiser ------------------------------------------------
def build_model(data: RunData, model_cfg: dict, seed: int, device) -> torch.nn.Module:
    """The classifier, initialised from ``seed``, normalising with the training images' statistics."""
    torch.manual_seed(seed)
    x01 = data.train_x.float() / 255.0
    mean, std = x01.mean(dim=(0, 2, 3)), x01.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del x01
    options = {k: v for k, v in model_cfg.items() if k not in ("architecture", "diagnostic_layers")}
    model = build_classifier(model_cfg["architecture"], data.n_classes, data.channels, mean, std, **options)
    return model.to(device)


def build_run_regulariser(arm: dict, data: RunData, model, stimuli: torch.Tensor, context: dict | None,
                          seed: int, device):
    """The arm's regulariser on ``device`` (None for an unregularised arm); ``context`` gets the
    seed and, for an MTL head, the channels of the network's taps."""
    context = dict(context or {}, seed=seed)
    kind = arm.get("regulariser") or "none"
    if kind != "none" and regularisers()[kind].needs_tap_channels:
        context["tap_channels"] = _tap_channels(model, stimuli[:2].to(device), regularised_layers(arm))
    regulariser = build_regulariser(arm, data.target, data.stimulus_rows("train"), context)
    return regulariser.to(device) if regulariser is not None else None


def oracle_of(regulariser) -> OracleTraining | None:
    """The regulariser if it is an oracle's two-stage training (which changes the loop itself)."""
    return regulariser if isinstance(regulariser, OracleTraining) else None


def optimiser_groups(model_params: list, regulariser_params: list, regulariser, training: TrainingConfig) -> list[dict]:
    """SGD's parameter groups: the network's parameters with the weight decay, the regulariser's
    with its own (the stacked engine groups its stacked tensors the same way)."""
    groups = [{"params": model_params, "weight_decay": training.weight_decay}]
    if regulariser_params:
        # Li's layer weights are not decayed; Safarani's readout and task weights are (their code)
        decay = training.weight_decay if getattr(regulariser, "weight_decay", False) else 0.0
        groups.append({"params": regulariser_params, "weight_decay": decay})
    return groups


def make_optimiser(model, regulariser, training: TrainingConfig) -> torch.optim.SGD:
    # frozen parameters (the oracle's core in its second stage) are left out
    model_params = [p for p in model.parameters() if p.requires_grad]
    regulariser_params = list(regulariser.parameters()) if regulariser is not None else []
    return torch.optim.SGD(optimiser_groups(model_params, regulariser_params, regulariser, training),
                           lr=training.lr, momentum=training.momentum)


def resume_or_start(checkpoint: Checkpoint, model, regulariser, oracle, training: TrainingConfig):
    """(history, first epoch to run (0-based), best epoch, optimiser): from the checkpoint of this
    configuration if there is one, else a fresh start."""
    state = checkpoint.load()
    history, start = ([], 0) if state is None else (state.history, state.epoch + 1)
    best = BestEpoch.for_schedule(training.lr_schedule, None if state is None else state.best)
    if state is not None:
        state.restore(model, regulariser, checkpoint.device)
    if oracle is not None and start > oracle.pretrain_epochs:
        oracle.enter_second_stage(model, None, reinitialise=False)  # the checkpoint holds the retrained rest
    optimiser = make_optimiser(model, regulariser, training)
    # an oracle resumed right at its switch starts the second stage with a fresh optimiser
    if state is not None and not (oracle is not None and start == oracle.pretrain_epochs):
        optimiser.load_state_dict(state.optimiser)
    return history, start, best, optimiser


# -- one epoch's steps --------------------------------------------------------------------------------
def penalty_term(arm: dict) -> str:
    """What the arm's regulariser term is called in a NonFiniteLossError (its kind's declaration)."""
    kind = arm.get("regulariser") or "none"
    return "regulariser term" if kind == "none" else regularisers()[kind].penalty_term


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the run diverged. Raised before anything of that epoch is
    saved, so no model.pt or history.csv is written and checkpoint.pt, if any, keeps the last good
    epoch (a rerun with a changed configuration ignores it, the same one resumes from it).

    ``epoch`` is 1-based, as in the history; ``batch`` the 0-based step within the epoch (None for
    the validation loss); ``term`` the loss that is not finite."""

    def __init__(self, epoch: int, batch: int | None, term: str, value: float, steps: int | None = None):
        self.epoch, self.batch, self.term, self.value = epoch, batch, term, value
        where = ("on the validation images after its last batch" if batch is None
                 else f"batch {batch} (0-based; {steps} batches per epoch)")
        kept = (f"no model.pt or history.csv was written and checkpoint.pt still holds epoch {epoch - 1}"
                if epoch > 1 else "no model.pt, history.csv or checkpoint.pt was written")
        super().__init__(f"non-finite loss in epoch {epoch}, {where}: {term} = {value}. Nothing of epoch {epoch} "
                         f"was saved: {kept}. Lower training.lr or the regulariser's weight.")


class StepLosses:
    """Each step's loss terms (cross-entropy, the regulariser's term, the total) kept on the device.

    ``eager`` (on the CPU, where reading a value costs nothing) checks every step as it is recorded;
    otherwise :meth:`check` reads them once, at the end of the epoch, so the step loop never waits
    for the GPU. Either way the first non-finite batch and term is reported. ``values`` [steps, 3]:
    terms already recorded elsewhere (a stacked run's slice of its stack's, :mod:`neurobias.stacked`)."""

    def __init__(self, steps: int, device, penalty_term: str, eager: bool, values: torch.Tensor | None = None):
        self.values = torch.zeros(steps, 3, device=device) if values is None else values
        self.terms = ("cross-entropy", penalty_term, "total loss")
        self.eager = eager

    def record(self, epoch: int, step: int, ce, penalty, total) -> None:
        self.values[step] = torch.stack([ce.detach(), penalty.detach(), total.detach()])
        if self.eager:
            self._raise_first_bad(epoch, step, self.values[step:step + 1])

    def check(self, epoch: int) -> None:
        self._raise_first_bad(epoch, 0, self.values)

    def _raise_first_bad(self, epoch: int, first_step: int, values: torch.Tensor) -> None:
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            step, term = divmod(int(bad.flatten().nonzero()[0]), values.shape[1])
            raise NonFiniteLossError(epoch + 1, first_step + step, self.terms[term], float(values[step, term]),
                                     len(self.values))


@dataclass
class EpochSums:
    """An epoch's training sums, read from the device once at its end."""
    loss: float
    ce: float
    penalty: float
    correct: float
    n_active: int  # steps that added the regulariser's term
    steps: int
    batch_size: int

    def history_entries(self) -> dict:
        return {"train_loss": self.loss / self.steps, "train_ce": self.ce / self.steps,
                "train_similarity_loss": self.penalty / max(self.n_active, 1),
                "train_accuracy": self.correct / (self.steps * self.batch_size)}


class EpochStep:
    """One epoch's optimisation steps over the (device-resident) training images.

    Everything random comes from the epoch's generator, in a fixed order: the batch order, then per
    step the augmentation (or the oracle's corruptions) and the stimulus batches. Sums and each
    step's loss terms stay on the device: no host synchronisation inside the step loop (except the
    finiteness check on the CPU)."""

    def __init__(self, model, regulariser, data: RunData, stimuli_dev: torch.Tensor, training: TrainingConfig,
                 device: torch.device, precision: str, memory_format, penalty_term: str, progress: bool):
        self.model, self.regulariser, self.training = model, regulariser, training
        self.oracle = oracle_of(regulariser)
        self.device, self.precision, self.memory_format = device, precision, memory_format
        self.train_x, self.train_y = data.train_x.to(device), data.train_y.to(device)
        self.stimuli = stimuli_dev
        self.bns = batchnorm_layers(model)
        self.steps = len(data.train_x) // training.batch_size  # drop the ragged last batch: BN needs > 1 sample
        self.penalty_term, self.progress = penalty_term, progress

    def __call__(self, epoch: int, optimiser, g: torch.Generator) -> EpochSums:
        training, model, oracle, device = self.training, self.model, self.oracle, self.device
        pretraining = oracle is not None and oracle.in_pretraining(epoch)
        order = torch.randperm(len(self.train_x), generator=g).to(device)
        enter_training_mode(model, oracle, epoch)
        sums = torch.zeros(4, device=device)  # loss, ce, penalty, correct
        losses = StepLosses(self.steps, device, self.penalty_term, eager=device.type == "cpu")
        n_active = 0
        bar = tqdm(range(self.steps), desc=f"epoch {epoch + 1}/{training.total_epochs(oracle)}",
                   disable=not self.progress, mininterval=5, file=None)
        for step in bar:
            idx = order[step * training.batch_size:(step + 1) * training.batch_size]
            y = self.train_y[idx]
            if pretraining:
                x = oracle_inputs(oracle, self.train_x[idx], training, g).contiguous(memory_format=self.memory_format)
                loss, ce, penalty, logits = oracle_loss(model, oracle, x, y, device, self.precision)
                active = True
            else:
                loss, ce, penalty, logits, active = self._step(epoch, step, idx, y, g)
            losses.record(epoch, step, ce, penalty, loss)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            sums += torch.stack([loss.detach(), ce.detach(), penalty.detach(),
                                 (logits.detach().argmax(1) == y).sum().float()])
            n_active += active
        losses.check(epoch)
        return EpochSums(*sums.tolist(), n_active=n_active, steps=self.steps, batch_size=training.batch_size)

    def _step(self, epoch: int, step: int, idx, y, g):
        """A classification batch plus the regulariser's stimulus batches:
        (total loss, cross-entropy, penalty (0 without one), logits, whether the penalty was added)."""
        reg = self.regulariser
        x = augment(self.train_x[idx].float() / 255.0, self.training, g).contiguous(memory_format=self.memory_format)
        n_batches = reg.stimulus_batches(epoch, step) if reg is not None else 0
        stimulus_rows = [reg.stimulus_batch(g).to(self.device) for _ in range(n_batches)]
        loss, ce, penalty, logits = regularised_loss(self.model, reg, self.bns, x, y, stimulus_rows, self.stimuli,
                                                     self.device, self.precision)
        return loss, ce, penalty, logits, n_batches > 0


def neural_pass_statistics(reg, bns: list[torch.nn.Module]):
    """The context of a stimulus pass: BatchNorm's running statistics frozen for an arm with
    ``neural_batchnorm: freeze``, left to update otherwise (a regulariser built by hand, not by
    :func:`~neurobias.regularisers.build_regulariser`, has no option: update, the default)."""
    if getattr(reg, "neural_batchnorm", "update") == "freeze":
        return frozen_batchnorm_statistics(bns)
    return contextlib.nullcontext()


def regularised_loss(model, reg, bns, x: torch.Tensor, y: torch.Tensor, stimulus_rows, stimuli: torch.Tensor,
                     device, precision: str):
    """One step's loss on inputs already drawn: (total loss, cross-entropy, penalty (0 without
    one), logits). ``x``: the augmented classification batch; ``stimulus_rows``: the regulariser's
    stimulus batches (rows of ``stimuli``, one per batch; none on a step without its term); ``bns``:
    the model's BatchNorm layers (:func:`batchnorm_layers`). Random draws stay with the caller, so
    the one-model loop (:class:`EpochStep`) and the stacked one (:mod:`neurobias.stacked`, under
    ``vmap``) compute the same function."""
    with autocast(device, precision):
        logits = model(x).float()
    ce = F.cross_entropy(logits, y)
    penalty = None
    for k in range(len(stimulus_rows)):
        rows = stimulus_rows[k]
        # Stimuli get their own training-mode forward pass (BatchNorm normalises with their own
        # batch statistics). neural_batchnorm "update" (the default, as the authors' trainers)
        # lets it update BatchNorm's running statistics too; "freeze" leaves them to the
        # classification batches, so the evaluated network's statistics are built as in the
        # unregularised arm and only the regulariser's gradient differs.
        with neural_pass_statistics(reg, bns), autocast(device, precision):
            _, feats = model.forward_taps(stimuli[rows], reg.taps, features_only=True)
        term = reg.loss({t: f.float() for t, f in feats.items()}, rows)
        penalty = term if penalty is None else penalty + term
    loss = reg.total_loss(ce, penalty) if reg is not None else ce
    penalty = torch.zeros((), device=device) if penalty is None else penalty
    return loss, ce, penalty, logits


# -- the held-out part of an epoch's history row ----------------------------------------------------
class EpochScores:
    """Validation loss and accuracy (a non-finite validation loss raises), the similarity fit on
    held-out stimuli, the oracle's stage, and where asked for the test metrics (``track_test``),
    an MTL head's neural prediction and the regulariser's own values."""

    def __init__(self, model, regulariser, data: RunData, stimuli_dev: torch.Tensor, diagnostic_taps,
                 training: TrainingConfig, device: torch.device):
        self.model, self.regulariser, self.data, self.training, self.device = model, regulariser, data, training, device
        self.oracle = oracle_of(regulariser)
        self.stimuli, self.taps = stimuli_dev, diagnostic_taps
        self.test_rows = torch.as_tensor(data.stimulus_rows("test")[:256])
        self.all_test_rows = torch.as_tensor(data.stimulus_rows("test"), device=device)
        self.diagnostic_target = torch.as_tensor(data.diagnostic_target, dtype=torch.float32)
        self.batch_size = evaluation_batch_size(training, device)

    def __call__(self, epoch: int) -> dict:
        model, reg, data, training, device = self.model, self.regulariser, self.data, self.training, self.device
        val_loss, val_acc = evaluate(model, data.val_x, data.val_y, self.batch_size, device)
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(epoch + 1, None, "validation cross-entropy", val_loss)
        row = {"val_loss": val_loss, "val_accuracy": val_acc,
               "heldout_similarity_r": heldout_similarity_fit(model, reg, self.taps, self.stimuli, self.test_rows,
                                                              self.diagnostic_target, device)}
        if self.oracle is not None:
            row["stage"] = "pretraining" if self.oracle.in_pretraining(epoch) else "retraining"
        if training.track_test:
            n = training.train_eval_images
            row.update(epoch_test_metrics(model, data.test, data.train_x[:n], data.train_y[:n],
                                          data.superclass_of_class, self.batch_size, device))
        if isinstance(reg, MTLRegulariser):
            row.update(reg.heldout_prediction(model, self.stimuli, self.all_test_rows, data.responses))
        if reg is not None:
            row.update(reg.log())
        return row


def write_results(out_dir: Path, model, model_cfg: dict, data: RunData, regulariser, frame: pd.DataFrame) -> None:
    """model.pt (an MTL arm's neural head kept beside the classifier) and history.csv, atomically."""
    head = regulariser.state_dict() if isinstance(regulariser, MTLRegulariser) else None
    save_classifier(model, model_cfg, data.n_classes, data.channels, out_dir / "model.pt", neural_head=head)
    tmp = out_dir / "history.csv.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out_dir / "history.csv")


@dataclass
class RunStart:
    """A run before its first epoch to train: its precision, checkpoint, network, regulariser,
    stimulus inputs (on the host), the state it resumes (history, first epoch, best epoch,
    optimiser) and the network's memory format, from :func:`start_run`."""
    precision: str
    checkpoint: Checkpoint
    model: torch.nn.Module
    regulariser: torch.nn.Module | None
    stimuli: torch.Tensor
    history: list
    start: int
    best: BestEpoch
    optimiser: torch.optim.SGD
    memory_format: torch.memory_format


def start_run(data: RunData, *, arm: dict, model_cfg: dict, training: TrainingConfig, seed: int, device,
              out_dir: Path, context: dict | None, memory_format=None, engine: str = "sequential",
              stimuli: torch.Tensor | None = None) -> RunStart:
    """Build a run's network and regulariser and resume it from its checkpoint where one of this
    configuration exists: the one-model loop (:func:`train_arm`) and a stack's runs
    (:mod:`neurobias.stacked`, ``engine`` "stacked") start the same way. ``stimuli``: the stimulus
    inputs if the caller has them (a stack's runs share them); ``memory_format``: the network's
    layout, by default the one-model loop's (:func:`training_memory_format`)."""
    if training.track_test and data.test is None:
        raise ValueError("training.track_test: needs the test split")
    device = torch.device(device)
    precision = resolve_precision(training.precision, device)
    spec = run_spec(data, arm, model_cfg, training, seed, precision, context, engine=engine)
    checkpoint = Checkpoint(Path(out_dir) / CHECKPOINT_NAME, run_hash(spec), device)
    model = build_model(data, model_cfg, seed, device)
    if memory_format is None:
        memory_format = training_memory_format(training, model, device)
    model = model.to(memory_format=memory_format)
    stim = stimuli_as_inputs(data.stimuli, data.channels, data.size) if stimuli is None else stimuli
    regulariser = build_run_regulariser(arm, data, model, stim, context, seed, device)
    history, start, best, optimiser = resume_or_start(checkpoint, model, regulariser, oracle_of(regulariser), training)
    return RunStart(precision, checkpoint, model, regulariser, stim, history, start, best, optimiser, memory_format)


def diagnostic_taps(arm: dict, model_cfg: dict) -> tuple[str, ...]:
    """The layers a run's held-out similarity fit is scored on: the ones its regulariser reads, else
    the model's diagnostic layers (the architecture's default taps)."""
    return regularised_layers(arm) or tuple(model_cfg.get("diagnostic_layers")
                                            or default_diagnostic_taps(model_cfg["architecture"]))


# -- the entry point -------------------------------------------------------------------------------
def train_arm(*, train, val, stimuli: np.ndarray, stimulus_tiers: np.ndarray, target: np.ndarray | None,
              diagnostic_target: np.ndarray, arm: dict, model_cfg: dict, training: TrainingConfig,
              seed: int, device: str, out_dir: str | Path, progress: bool = True,
              test=None, superclass_of_class: list[int] | None = None, context: dict | None = None,
              stop_after_epoch: int | None = None, keep_checkpoint: bool = False) -> pd.DataFrame:
    """Train one (arm, seed) and write ``model.pt`` and ``history.csv`` into ``out_dir``.

    train, val: (images uint8 [N,C,H,W], labels int64 [N], class names) from the prepared format.
    stimuli: grey stimulus images [M,H,W] uint8 with ``stimulus_tiers`` ('train'/'test');
    target: S_neural [M,M] for this arm (None for an unregularised arm); diagnostic_target: the
    matrix every arm's held-out fit is scored against.
    arm: {"regulariser": "none" | "similarity" | "rsm", ..., "label_noise": fraction of training
    labels corrupted (optional)}; context: study-level settings for the regulariser (rsm_metric).
    test: the test split, needed when ``training.track_test`` (per-epoch test metrics);
    superclass_of_class: the dataset's coarse label per class, if it has one.
    ``stop_after_epoch`` simulates a killed job (tests). ``keep_checkpoint`` leaves the final
    epoch's checkpoint behind (a pack's runs, :mod:`neurobias.packed`): run again, it rewrites the
    same files without training.
    Raises :class:`NonFiniteLossError` when a loss diverges, before anything of that epoch is saved.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    data = RunData.prepare(train=train, val=val, test=test, stimuli=stimuli, stimulus_tiers=stimulus_tiers,
                           target=target, diagnostic_target=diagnostic_target,
                           superclass_of_class=superclass_of_class, responses=(context or {}).get("responses"),
                           label_noise=arm.get("label_noise"), seed=seed)
    run = start_run(data, arm=arm, model_cfg=model_cfg, training=training, seed=seed, device=device,
                    out_dir=out_dir, context=context)
    precision, checkpoint, model, regulariser = run.precision, run.checkpoint, run.model, run.regulariser
    history, start, best, optimiser, memory_format = run.history, run.start, run.best, run.optimiser, run.memory_format
    print(f"precision {precision}, memory format {describe_memory_format(training, model, memory_format)}", flush=True)
    oracle = oracle_of(regulariser)

    stim_dev = run.stimuli.to(device).contiguous(memory_format=memory_format)
    run_epoch = EpochStep(model, regulariser, data, stim_dev, training, device, precision, memory_format,
                          penalty_term(arm), progress)
    score_epoch = EpochScores(model, regulariser, data, stim_dev, diagnostic_taps(arm, model_cfg), training, device)
    for epoch in range(start, training.total_epochs(oracle)):
        lr, stop = learning_rate_and_stop(training, epoch, history, oracle)
        if stop:
            print(f"early stop before epoch {epoch + 1}: the learning rate was reduced "
                  f"{training.lr_schedule.get('max_decays')} times", flush=True)
            break
        g = epoch_generator(seed, epoch)
        if oracle is not None and epoch == oracle.pretrain_epochs:  # the oracle's second stage
            oracle.enter_second_stage(model, g, reinitialise=True)
            optimiser = make_optimiser(model, regulariser, training)
            best.reset()  # the result is the retrained network
        for group in optimiser.param_groups:
            group["lr"] = lr
        sums = run_epoch(epoch, optimiser, g)
        row = {"epoch": epoch + 1, "lr": lr, **sums.history_entries(), **score_epoch(epoch)}
        history.append(row)
        print(json.dumps(row), flush=True)
        best.update(epoch + 1, row["val_accuracy"], model, regulariser)
        checkpoint.save(epoch, model, optimiser, regulariser, history, best.state)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            return pd.DataFrame(history)

    frame = best.restore(model, regulariser, history)
    write_results(out_dir, model, model_cfg, data, regulariser, frame)
    if not keep_checkpoint:
        checkpoint.remove()
    return frame
