"""One training loop for every arm: cross-entropy plus an optional regulariser.

Resumable by construction. Everything random inside an epoch (the order of training images, the
augmentation, the stimulus batches) is drawn from a generator seeded by ``(seed, epoch)``, and the
learning rate is a function of the epoch alone. So the state at the end of an epoch (weights,
optimiser, regulariser, history) is all that a resumed run needs, and a run killed at any point and
restarted ends with exactly the same history and weights as an uninterrupted one (on CPU).

The checkpoint is written atomically after every epoch and carries a hash of everything that
defines the run; a checkpoint from a different configuration is ignored, never resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from .layer_names import DEFAULT_DIAGNOSTIC_TAPS
from .models import build_classifier
from .regularisers import MTLRegulariser, build_regulariser, regularised_layers
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
    eval_batch_size: int = 512
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


    def total_epochs(self, oracle=None) -> int:
        """Epochs of the run: an oracle arm pretrains its core first (``oracle.pretrain_epochs``)."""
        return self.epochs + (oracle.pretrain_epochs if oracle is not None else 0)


def resolve_precision(precision: str, device) -> str:
    """'bf16' or 'fp32' for this device: 'auto' picks bf16 only where it is native (emulated bf16
    on an old CPU is slower than fp32)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"training.precision: unknown {precision!r} (auto, bf16, fp32)")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return "fp32"


def autocast(device, precision: str):
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def learning_rate(cfg: TrainingConfig, epoch: int) -> float:
    s = cfg.lr_schedule
    kind = s.get("kind", "constant")
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
    factor, patience = s.get("factor", 0.3), s.get("patience", 5)
    threshold, max_decays = s.get("threshold", 1e-3), s.get("max_decays", 3)
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
    if cfg.crop_padding:
        p = cfg.crop_padding
        n, _, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (n,), generator=g)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=g)
        rows = (oy[:, None] + torch.arange(h)[None]).to(x.device)
        cols = (ox[:, None] + torch.arange(w)[None]).to(x.device)
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    if cfg.flip:
        flip = (torch.rand(len(x), generator=g) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.rotation:
        # one affine grid for the whole batch, sampled on the device (zeros outside the image)
        angle = (torch.rand(len(x), generator=g) * 2 - 1) * math.radians(cfg.rotation)
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
    BatchNorm layers (:func:`batchnorm_layers`, collected once, outside the step loop) untouched."""
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def stimuli_as_inputs(stimuli_uint8: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """Grey stimulus images [N,H,W] uint8 -> network inputs [N,C,size,size] in [0,1]."""
    x = torch.as_tensor(stimuli_uint8, dtype=torch.float32)[:, None] / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.expand(-1, channels, -1, -1).contiguous()


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


def _oracle_step(model, oracle, images_u8, y, cfg: TrainingConfig, g, memory_format, device, precision):
    """One first-stage step of the oracle: clean + corrupted images for the cross-entropy, a second
    corruption of the corrupted ones for the consistency term; both versions share one crop, flip
    and rotation (augmented together as channels of one tensor)."""
    first, second, n_corrupted = oracle.views(images_u8, g)
    b, c = first.shape[:2]
    padded = torch.cat([torch.zeros_like(first[: b - n_corrupted]), second])
    both = augment(torch.cat([first, padded], 1).float() / 255.0, cfg, g)
    x = torch.cat([both[:, :c], both[b - n_corrupted:, c:]]).contiguous(memory_format=memory_format)
    with autocast(device, precision):
        logits_all, feats = model.forward_taps(x, oracle.taps)
    logits = logits_all[:b].float()
    ce = F.cross_entropy(logits, y)
    consistency = oracle.consistency(feats[oracle.taps[0]], b, n_corrupted)
    return ce + oracle.weight * consistency, ce, consistency, logits


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-12))


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Logits (fp32, on the CPU) for uint8 images, in eval mode."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size].to(device).float() / 255.0).float().cpu()
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
    t = target.to(device)[rows][:, rows]
    return _pearson(s[iu[0], iu[1]], t[iu[0], iu[1]])


def _digest(array) -> str | None:
    if array is None:
        return None
    a = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()[:16]


def run_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_arm(*, train, val, stimuli: np.ndarray, stimulus_tiers: np.ndarray, target: np.ndarray | None,
              diagnostic_target: np.ndarray, arm: dict, model_cfg: dict, training: TrainingConfig,
              seed: int, device: str, out_dir: str | Path, progress: bool = True,
              test=None, superclass_of_class: list[int] | None = None, context: dict | None = None,
              stop_after_epoch: int | None = None) -> pd.DataFrame:
    """Train one (arm, seed) and write ``model.pt`` and ``history.csv`` into ``out_dir``.

    train, val: (images uint8 [N,C,H,W], labels int64 [N], class names) from the prepared format.
    stimuli: grey stimulus images [M,H,W] uint8 with ``stimulus_tiers`` ('train'/'test');
    target: S_neural [M,M] for this arm (None for an unregularised arm); diagnostic_target: the
    matrix every arm's held-out fit is scored against.
    arm: {"regulariser": "none" | "similarity" | "rsm", ..., "label_noise": fraction of training
    labels corrupted (optional)}; context: study-level settings for the regulariser (rsm_metric).
    test: the test split, needed when ``training.track_test`` (per-epoch test metrics);
    superclass_of_class: the dataset's coarse label per class, if it has one.
    ``stop_after_epoch`` simulates a killed job (tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    device = torch.device(device)
    train_x, train_y, classes = train
    val_x, val_y, _ = val
    n_classes, channels, size = len(classes), train_x.shape[1], train_x.shape[-1]
    if arm.get("label_noise"):
        train_y, _ = corrupt_labels(train_y, float(arm["label_noise"]), n_classes, seed)
    if training.track_test and test is None:
        raise ValueError("training.track_test: needs the test split")

    # Everything that defines the run, data included (a shuffled target has the same sum as the
    # real one, so hash the bytes), so a checkpoint from any other run is never resumed.
    spec = {"arm": arm, "model": model_cfg, "training": asdict(training), "seed": seed,
            "package": __version__, "precision": resolve_precision(training.precision, device),
            "context": {k: v for k, v in (context or {}).items() if k != "responses"},
            "data": [_digest(a) for a in (train_x, train_y, val_x, val_y, stimuli, stimulus_tiers,
                                          target, diagnostic_target, (context or {}).get("responses"))]
            + ([_digest(test[0]), _digest(test[1]), superclass_of_class] if training.track_test else [])}
    spec_hash = run_hash(spec)

    torch.manual_seed(seed)
    x01 = train_x.float() / 255.0
    mean, std = x01.mean(dim=(0, 2, 3)), x01.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del x01
    options = {k: v for k, v in model_cfg.items() if k not in ("architecture", "diagnostic_layers")}
    model = build_classifier(model_cfg["architecture"], n_classes, channels, mean, std, **options).to(device)
    precision = resolve_precision(training.precision, device)
    memory_format = torch.channels_last if training.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    print(f"precision {precision}, memory format {'channels_last' if training.channels_last else 'NCHW'}", flush=True)

    stim = stimuli_as_inputs(stimuli, channels, size)
    train_rows = np.flatnonzero(stimulus_tiers == "train")
    test_rows = torch.as_tensor(np.flatnonzero(stimulus_tiers == "test")[:256])
    diag_target = torch.as_tensor(diagnostic_target, dtype=torch.float32)
    context = dict(context or {}, seed=seed)
    if arm.get("regulariser") == "mtl":
        context["tap_channels"] = _tap_channels(model, stim[:2].to(device), regularised_layers(arm))
    regulariser = build_regulariser(arm, target, train_rows, context)
    if regulariser is not None:
        regulariser = regulariser.to(device)
    diag_taps = regularised_layers(arm) or tuple(model_cfg.get("diagnostic_layers")
                                                 or DEFAULT_DIAGNOSTIC_TAPS[model_cfg["architecture"]])

    oracle = regulariser if isinstance(regulariser, OracleTraining) else None

    def make_optimiser():
        # frozen parameters (the oracle's core in its second stage) are left out
        params = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": training.weight_decay}]
        if regulariser is not None and any(True for _ in regulariser.parameters()):
            # Li's layer weights are not decayed; Safarani's readout and task weights are (their code)
            decay = training.weight_decay if getattr(regulariser, "weight_decay", False) else 0.0
            params.append({"params": list(regulariser.parameters()), "weight_decay": decay})
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum)

    history: list[dict] = []
    start = 0
    optimiser_state = None
    # plateau schedule with restore_best: the weights of the best validation epoch are the result
    restore_best = training.lr_schedule.get("kind") == "plateau" and training.lr_schedule.get("restore_best", True)
    best = None  # {"epoch", "val_accuracy", "model", "regulariser"}
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt.get("spec_hash") == spec_hash:
            model.load_state_dict(ckpt["model"])
            if regulariser is not None:
                regulariser.load_state_dict(ckpt["regulariser"])
            history, start = ckpt["history"], ckpt["epoch"] + 1
            optimiser_state = ckpt["optimiser"]
            best = ckpt.get("best")
            # the global generator feeds stochastic layers (a VOneBlock's noise): resume it too
            if "torch_rng" in ckpt:
                torch.set_rng_state(ckpt["torch_rng"].cpu())
            if device.type == "cuda" and "cuda_rng" in ckpt:
                torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
            print(f"resuming from {ckpt_path} after epoch {ckpt['epoch']}", flush=True)
        else:
            print(f"ignoring {ckpt_path}: it belongs to a different configuration", flush=True)
    if oracle is not None and start > oracle.pretrain_epochs:
        oracle.enter_second_stage(model, None, reinitialise=False)  # the checkpoint holds the retrained rest
    optimiser = make_optimiser()
    if optimiser_state is not None and not (oracle is not None and start == oracle.pretrain_epochs):
        optimiser.load_state_dict(optimiser_state)

    train_x_dev, train_y_dev = train_x.to(device), train_y.to(device)
    bns = batchnorm_layers(model)
    stim_dev = stim.to(device).contiguous(memory_format=memory_format)
    all_test_rows = torch.as_tensor(np.flatnonzero(stimulus_tiers == "test"), device=device)
    n = len(train_x)
    steps = n // training.batch_size  # drop the ragged last batch: BN needs > 1 sample
    for epoch in range(start, training.total_epochs(oracle)):
        lr, stop = learning_rate_and_stop(training, epoch, history, oracle)
        if stop:
            print(f"early stop before epoch {epoch + 1}: the learning rate was reduced "
                  f"{training.lr_schedule.get('max_decays')} times", flush=True)
            break
        g = epoch_generator(seed, epoch)
        pretraining = oracle is not None and oracle.in_pretraining(epoch)
        if oracle is not None and epoch == oracle.pretrain_epochs:
            oracle.enter_second_stage(model, g, reinitialise=True)
            optimiser = make_optimiser()
            best = None  # the result is the retrained network
        for group in optimiser.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=g).to(device)
        model.train()
        if oracle is not None and not pretraining:
            for block in oracle.core_modules(model):
                block.eval()  # frozen core: BatchNorm keeps its statistics
        # Running sums stay on the device: no host synchronisation inside the step loop.
        sums = torch.zeros(4, device=device)  # loss, ce, similarity, correct
        n_active = 0  # steps that added the regulariser's penalty
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{training.total_epochs(oracle)}", disable=not progress,
                   mininterval=5, file=None)
        for step in bar:
            idx = order[step * training.batch_size:(step + 1) * training.batch_size]
            y = train_y_dev[idx]
            if pretraining:
                loss, ce, sim, logits = _oracle_step(model, oracle, train_x_dev[idx], y, training, g,
                                                     memory_format, device, precision)
                n_active += 1
            else:
                x = augment(train_x_dev[idx].float() / 255.0, training, g).contiguous(memory_format=memory_format)
                with autocast(device, precision):
                    logits = model(x).float()
                ce = F.cross_entropy(logits, y)
                n_batches = regulariser.stimulus_batches(epoch, step) if regulariser is not None else 0
                sim = None
                for _ in range(n_batches):
                    rows = regulariser.stimulus_batch(g).to(device)
                    # Stimuli get their own forward pass, and BatchNorm's running statistics ignore
                    # it: the classifier's batches and the evaluated network are then built exactly
                    # as in the unregularised arm, and only the regulariser's gradient differs.
                    with frozen_batchnorm_statistics(bns), autocast(device, precision):
                        _, feats = model.forward_taps(stim_dev[rows], regulariser.taps, features_only=True)
                    term = regulariser.loss({t: f.float() for t, f in feats.items()}, rows)
                    sim = term if sim is None else sim + term
                loss = regulariser.total_loss(ce, sim) if regulariser is not None else ce
                n_active += n_batches > 0
                sim = torch.zeros((), device=device) if sim is None else sim
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            sums += torch.stack([loss.detach(), ce.detach(), sim.detach(),
                                 (logits.detach().argmax(1) == y).sum().float()])
        sums = dict(zip(("loss", "ce", "sim", "correct"), sums.tolist()))
        val_loss, val_acc = evaluate(model, val_x, val_y, training.eval_batch_size, device)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": sums["loss"] / steps,
               "train_ce": sums["ce"] / steps, "train_similarity_loss": sums["sim"] / max(n_active, 1),
               "train_accuracy": sums["correct"] / (steps * training.batch_size),
               "val_loss": val_loss, "val_accuracy": val_acc,
               "heldout_similarity_r": heldout_similarity_fit(model, regulariser, diag_taps, stim_dev,
                                                              test_rows, diag_target, device)}
        if oracle is not None:
            row["stage"] = "pretraining" if pretraining else "retraining"
        if training.track_test:
            row.update(epoch_test_metrics(model, test, train_x[:training.train_eval_images],
                                          train_y[:training.train_eval_images], superclass_of_class,
                                          training.eval_batch_size, device))
        if isinstance(regulariser, MTLRegulariser):
            row.update(regulariser.heldout_prediction(model, stim_dev, all_test_rows, (context or {}).get("responses")))
        if regulariser is not None:
            row.update(regulariser.log())
        history.append(row)
        print(json.dumps(row), flush=True)
        if restore_best and (best is None or val_acc > best["val_accuracy"]):
            best = {"epoch": epoch + 1, "val_accuracy": val_acc,
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "regulariser": {k: v.detach().clone() for k, v in regulariser.state_dict().items()}
                    if regulariser is not None else {}}
        _atomic_save({"epoch": epoch, "spec_hash": spec_hash, "model": model.state_dict(), "best": best,
                      "optimiser": optimiser.state_dict(),
                      "regulariser": regulariser.state_dict() if regulariser is not None else {},
                      "torch_rng": torch.get_rng_state(),
                      **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                      "history": history}, ckpt_path)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            return pd.DataFrame(history)

    if restore_best and best is not None:
        print(f"restoring the weights of epoch {best['epoch']} (best validation accuracy {best['val_accuracy']:.4f})",
              flush=True)
        model.load_state_dict(best["model"])
        if regulariser is not None:
            regulariser.load_state_dict(best["regulariser"])
    frame = pd.DataFrame(history)
    if restore_best and best is not None:
        frame["restored"] = frame["epoch"] == best["epoch"]
    # an MTL arm's neural head is kept beside the classifier (neural prediction performance)
    head = regulariser.state_dict() if isinstance(regulariser, MTLRegulariser) else None
    save_classifier(model, model_cfg, n_classes, channels, out_dir / "model.pt", neural_head=head)
    tmp = out_dir / "history.csv.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out_dir / "history.csv")
    ckpt_path.unlink(missing_ok=True)
    return frame


def save_classifier(model, model_cfg: dict, n_classes: int, channels: int, path: Path,
                    neural_head: dict | None = None) -> None:
    extra = {} if neural_head is None else {"neural_head": {k: v.detach().cpu() for k, v in neural_head.items()}}
    _atomic_save({"model_cfg": dict(model_cfg), "num_classes": n_classes, "in_channels": channels, **extra,
                  # contiguous: the canonical layout, whatever memory format training used
                  "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}}, Path(path))


def load_classifier(path, device="cpu"):
    """Rebuild a trained classifier; ``weights_only=True`` so a checkpoint cannot run code."""
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = dict(blob["model_cfg"])
    options = {k: v for k, v in cfg.items() if k not in ("architecture", "diagnostic_layers")}
    sd = blob["state_dict"]
    model = build_classifier(cfg["architecture"], blob["num_classes"], blob["in_channels"],
                             sd["mean"].flatten().clone(), sd["std"].flatten().clone(), **options)
    model.load_state_dict(sd)
    return model.to(device).eval()
