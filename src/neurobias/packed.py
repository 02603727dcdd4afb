"""Packed training: the (arm, seed) runs of a study trained in one process (a study's ``pack``).

A training job of the default workflow trains one network; a packed job trains up to ``pack``
of them. What a pack saves is everything a job pays besides the training itself: the scheduler
job on a cluster (hundreds of sbatch jobs become tens), and on every machine the job's start
(Snakemake's script wrapper, the interpreter, ``import torch``: about 9 s beside a demo model's
18 s of training on the 2-core reference machine) and the reading of the dataset, the recording
and the targets, which the pack does once.

The runs of a pack are trained one after another, each through :func:`neurobias.train.train_arm`
exactly as it would be trained alone: its own seed, data order, regulariser, target and
optimiser, so each model is bit-identical to the one its own job would write (tested), for every
kind of arm. That is the default engine (``pack_engine: sequential``). The other one,
``pack_engine: stacked`` (:mod:`neurobias.stacked`), trains the runs side by side as one vmapped
network, for GPUs; on the 2-core reference CPU it is slower (``benchmarks/stacked_training.py``:
0.54x for the demo net, 0.90x for CORnet-Z) and its numbers differ in the last bits.

Resuming: every run keeps its epoch checkpoint until the whole pack is written. Snakemake deletes
all outputs of a job that failed, the finished runs' included; their checkpoints, which are not
declared outputs, hold the final epoch, so a rerun rewrites those runs from their checkpoints
without training and resumes the interrupted one at its last finished epoch. A killed pack loses
at most the current epoch of one run, and ends with the same files as an uninterrupted one.

A run that fails (a diverging loss, say) does not stop the others: the pack trains every run,
then fails naming each run that did, so a rerun after the fix trains only those.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import CHECKPOINT_NAME
from .train import TrainingConfig, train_arm


@dataclass
class PackedRun:
    """One (arm, seed) run of a pack: what :func:`~neurobias.train.train_arm` takes besides the
    data the pack shares."""
    arm: dict
    model_cfg: dict
    seed: int
    target: np.ndarray | None
    out_dir: Path
    context: dict = field(default_factory=dict)


def train_runs(runs: list[PackedRun], *, training: TrainingConfig, device, progress: bool,
               on_finished: Callable[[int, float], None] | None = None, engine: str = "sequential",
               fit: str = "error", **shared) -> None:
    """Train ``runs`` on the data they share (``shared``: train, val, test, stimuli,
    stimulus_tiers, diagnostic_target, superclass_of_class, as :func:`train_arm` takes them): one
    after another (``engine`` "sequential"), or side by side as stacks (``engine`` "stacked",
    :mod:`neurobias.stacked`; ``fit`` "error" or "split" says what a stack too large for the
    device's memory does). ``on_finished(index, started)`` runs after each run's files are written
    (the job writes its provenance). A single sequential run removes its checkpoint as it
    finishes; otherwise they are all removed once every run is written."""
    if engine == "stacked":
        from .stacked import train_stacked
        failed = train_stacked(runs, training=training, device=device, progress=progress, fit=fit,
                               on_finished=on_finished, **shared)
        _finish(runs, failed)
        return
    if engine != "sequential":
        raise ValueError(f"pack_engine: unknown {engine!r} (sequential, stacked)")
    packed = len(runs) > 1
    failed: list[tuple[Path, Exception]] = []
    for k, run in enumerate(runs):
        started = time.time()
        if packed:
            print(f"pack: run {k + 1}/{len(runs)}: {run.out_dir}", flush=True)
        try:
            train_arm(arm=run.arm, model_cfg=run.model_cfg, training=training, seed=run.seed, target=run.target,
                      device=device, out_dir=run.out_dir, progress=progress, context=run.context,
                      keep_checkpoint=packed, **shared)
        except Exception as error:  # noqa: BLE001  (reported below, after the other runs)
            if not packed:
                raise
            traceback.print_exc()
            failed.append((Path(run.out_dir), error))
            continue
        if on_finished is not None:
            on_finished(k, started)
    if packed:
        _finish(runs, failed)


def _finish(runs: list[PackedRun], failed: list[tuple[Path, Exception]]) -> None:
    """Fail naming every failed run (the others keep their checkpoints), or remove the checkpoints."""
    if failed:
        if len(runs) == 1:
            raise failed[0][1]
        raise PackFailure(failed, len(runs)) from failed[0][1]
    for run in runs:
        (Path(run.out_dir) / CHECKPOINT_NAME).unlink(missing_ok=True)


class PackFailure(RuntimeError):
    """Runs of a pack failed; the others were trained and keep their checkpoints."""

    def __init__(self, failed: list[tuple[Path, Exception]], n_runs: int):
        self.failed = failed
        lines = "\n".join(f"  {out_dir}: {type(error).__name__}: {error}" for out_dir, error in failed)
        super().__init__(f"{len(failed)} of the pack's {n_runs} runs failed (the others were trained and "
                         f"keep their checkpoints, so a rerun trains only these):\n{lines}")
