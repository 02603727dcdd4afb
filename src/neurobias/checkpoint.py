"""A training run's epoch checkpoint and the plateau schedule's best epoch.

:class:`Checkpoint` is ``checkpoint.pt`` in a run's output directory: written atomically after
every epoch, read with ``weights_only=True`` (it cannot run code), and resumed only when its spec
hash (:func:`run_hash` of everything that defines the run) is the run's own; a checkpoint of any
other configuration is ignored and overwritten by the run's first epoch. It holds what a resumed
run needs to continue bit for bit: weights, optimiser, regulariser, history, the best epoch so far
and the global torch (and CUDA) random state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch


CHECKPOINT_NAME = "checkpoint.pt"  # beside the run's model.pt; deliberately not a declared output


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a killed job leaves the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(compact(obj), tmp)
    os.replace(tmp, path)


def compact(obj):
    """``obj`` with every tensor that is a view into a larger storage copied out: ``torch.save``
    writes a view's whole storage, and a stacked run's weights are views into its stack's
    (:mod:`neurobias.stacked`). Other tensors are kept as they are (their files are unchanged)."""
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.untyped_storage().nbytes() != obj.numel() * obj.element_size() else obj
    if isinstance(obj, dict):
        changed = {k: c for k, v in obj.items() if (c := compact(v)) is not v}
        if not changed:
            return obj
        out = copy.copy(obj)  # a state_dict's OrderedDict keeps its _metadata
        out.update(changed)
        return out
    if isinstance(obj, (list, tuple)):
        items = [compact(v) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    return obj


def digest(array) -> str | None:
    """A short hash of an array's bytes, dtype and shape (None for None)."""
    if array is None:
        return None
    a = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()[:16]


def run_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _state(module) -> dict:
    return module.state_dict() if module is not None else {}


@dataclass
class ResumeState:
    """What a checkpoint restores: ``epoch`` is the last finished one (0-based)."""
    epoch: int
    model: dict
    regulariser: dict
    optimiser: dict
    history: list[dict]
    best: dict | None
    torch_rng: torch.Tensor | None
    cuda_rng: torch.Tensor | None

    def restore(self, model, regulariser, device: torch.device) -> None:
        """Weights, regulariser and the global random state (which feeds stochastic layers such as
        a VOneBlock's noise); the optimiser state is loaded by the caller, once it has built it."""
        model.load_state_dict(self.model)
        if regulariser is not None:
            regulariser.load_state_dict(self.regulariser)
        if self.torch_rng is not None:
            torch.set_rng_state(self.torch_rng.cpu())
        if device.type == "cuda" and self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng.cpu(), device)


class Checkpoint:
    def __init__(self, path: str | Path, spec_hash: str, device):
        self.path, self.spec_hash, self.device = Path(path), spec_hash, torch.device(device)

    def load(self) -> ResumeState | None:
        """The saved state if there is one of this configuration, else None."""
        if not self.path.exists():
            return None
        ckpt = torch.load(self.path, map_location=self.device, weights_only=True)
        if ckpt.get("spec_hash") != self.spec_hash:
            print(f"ignoring {self.path}: it belongs to a different configuration", flush=True)
            return None
        print(f"resuming from {self.path} after epoch {ckpt['epoch']}", flush=True)
        return ResumeState(epoch=ckpt["epoch"], model=ckpt["model"], regulariser=ckpt["regulariser"],
                           optimiser=ckpt["optimiser"], history=ckpt["history"], best=ckpt.get("best"),
                           torch_rng=ckpt.get("torch_rng"), cuda_rng=ckpt.get("cuda_rng"))

    def save(self, epoch: int, model, optimiser, regulariser, history: list[dict], best: dict | None,
             path: Path | None = None, extra: dict | None = None) -> None:
        """The state after ``epoch`` (0-based), atomically, to ``path`` (default: the checkpoint's;
        a stack writes its runs' next checkpoints beside them first, :mod:`neurobias.stacked`), with
        ``extra`` entries (which :meth:`load` ignores)."""
        cuda = {"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}
        atomic_save({"epoch": epoch, "spec_hash": self.spec_hash, "model": model.state_dict(), "best": best,
                     "optimiser": optimiser.state_dict(), "regulariser": _state(regulariser),
                     "torch_rng": torch.get_rng_state(), **cuda, "history": history, **(extra or {})},
                    self.path if path is None else Path(path))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class BestEpoch:
    """The plateau schedule's ``restore_best``: a copy of the weights (and regulariser) of the epoch
    with the highest validation accuracy so far (the first of equals), restored at the end. Disabled,
    it records nothing. The oracle's second stage starts afresh (:meth:`reset`)."""

    def __init__(self, enabled: bool, state: dict | None = None):
        self.enabled = enabled
        self.state = state  # {"epoch" (1-based), "val_accuracy", "model", "regulariser"}

    @classmethod
    def for_schedule(cls, lr_schedule: dict, state: dict | None = None) -> "BestEpoch":
        # TrainingConfig fills the plateau schedule's restore_best from the schema
        return cls(lr_schedule["kind"] == "plateau" and lr_schedule["restore_best"], state)

    def reset(self) -> None:
        self.state = None

    def update(self, epoch: int, val_accuracy: float, model, regulariser) -> None:
        """After ``epoch`` (1-based, as in the history)."""
        if self.enabled and (self.state is None or val_accuracy > self.state["val_accuracy"]):
            copy = lambda module: {k: v.detach().clone() for k, v in _state(module).items()}
            self.state = {"epoch": epoch, "val_accuracy": val_accuracy, "model": copy(model),
                          "regulariser": copy(regulariser)}

    def restore(self, model, regulariser, history):
        """Load the best epoch's weights and return the history as a frame with a ``restored``
        column (the history unchanged when there is nothing to restore)."""
        frame = pd.DataFrame(history)
        if not self.enabled or self.state is None:
            return frame
        print(f"restoring the weights of epoch {self.state['epoch']} "
              f"(best validation accuracy {self.state['val_accuracy']:.4f})", flush=True)
        model.load_state_dict(self.state["model"])
        if regulariser is not None:
            regulariser.load_state_dict(self.state["regulariser"])
        frame["restored"] = frame["epoch"] == self.state["epoch"]
        return frame
