"""Stacked training: the runs of a pack trained side by side as one network (``pack_engine: stacked``).

The sequential engine (:mod:`neurobias.packed`) trains a pack's runs one after another; on a GPU
a width-8 ResNet or a CORnet-Z then leaves the device nearly idle, every step being a few hundred
kernel launches of tiny tensors. This engine stacks the N networks' parameters
(``torch.func.stack_module_state``) and computes every network's loss and gradients in one call
(``torch.func.vmap`` over ``grad``): the network's kernel launches are those of one model, whatever N
(the per-run draws add a few small copies per step).

What stays per run, exactly as in the run's own job (:func:`neurobias.train.train_arm`): the
initialisation (its seed), every random draw (data order, augmentation, stimulus batches, an
oracle's corruptions: each run's own epoch generator, drawn on the host before the stacked call, in
the one-model loop's order; the random numbers its network draws, dropout's masks, a VOneBlock's
noise, an MTL readout's sampled positions: :class:`StepProfiles` records which draws a step makes
and replays them from each run's own global random state, :mod:`.models.random_draws`), the labels
(label noise), the regulariser and its target, which parameters a step leaves without a gradient
(an MTL head without a neural batch), an oracle's two stages (its own first-stage loss, its core
frozen and the rest re-initialised at the switch), the history, the checkpoint (one per run, after
every epoch, with the run's own random state) and the written files. The loss is the same function
(:func:`neurobias.train.regularised_loss`, :func:`neurobias.train.oracle_loss`), evaluated by vmap.
One SGD over the stacked tensors is each run's SGD: its update is elementwise, and every run of a
stack has the same rate, momentum and weight decay. Each run's network object stays a normal module
whose parameters and BatchNorm statistics are views into the stacked tensors, so scoring,
checkpoints and model.pt go through the one-model code unchanged.

What differs: the numbers in their last bits. vmap turns a convolution over stacked weights into a
grouped convolution, a different kernel with a different summation order; training amplifies such
differences, as it does any change of kernel (tests/test_stacked.py measures the size after one
and after several epochs, in fp32; in bf16 the difference is that of bf16 itself, since
BatchNorm runs in fp32 here, see :func:`_fp32_batchnorm`). A run's last bits also depend on how many
runs share its stack. A stacked run is reproducible: the same stack on the same machine gives the
same numbers, and a killed stack resumes to them (its runs' checkpoints are written in two phases,
so a kill between two runs' files cannot leave the stack split across epochs). With ``pack:
auto`` the stacks' sizes follow the device's free memory, so they, and the last bits, can differ
between devices. The stacked engine trains in NCHW layout (vmap's inputs are 5-D; channels_last
is a 4-D layout), whatever ``training.channels_last`` says; the random numbers a network draws are
still those of the run's own job in its layout.

What it does not train (:func:`neurobias.stacking_rules.unsupported_reason`, checked with the
config): the plateau schedule (each run's rate would follow its own validation history), a
regulariser kind not declared ``stackable`` (:class:`neurobias.registry.RegulariserSpec`), and a user's
network whose layers draw random numbers directly from torch rather than through
:mod:`.models.random_draws` (torch.nn dropout is refused when the job starts; any other direct draw
stops the first stacked step with vmap's randomness error). Those packs use the sequential engine.

Memory: a stack holds N networks' activations at once. Before training, :func:`memory_plan` finds
one run's share: on a GPU measured by CUDA's allocator (after a warm-up step, the peak of a stacked
step of two copies of the run minus that of one, never below the count), on a CPU counted (the
tensors the backward pass keeps, parameters, gradients, momentum) and scaled by a measured factor.
N shares and the shared data are compared with the device's free memory: a stack that does not fit
stops before training, naming how many runs would. With ``pack: auto`` the job splits its runs
into stacks of that size instead.

On CPUs stacking does not pay (``benchmarks/stacked_training.py`` on the 2-core reference machine:
0.54x for the demo net, 0.90x for CORnet-Z, 0.47x for ResNet-18; oneDNN's grouped convolutions are
no faster than the separate ones), so the default engine is the sequential one; the stacked
engine is for GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from .checkpoint import CHECKPOINT_NAME, BestEpoch, Checkpoint
from .models import random_draws
from .models.io import stimuli_as_inputs
from .seeding import forked_global_rng
from .stacking_rules import stack_key, unsupported_reason
from .train import (EpochScores, EpochSums, NonFiniteLossError, RunData, StepLosses, penalty_term,
                    apply_augmentation, augment, batchnorm_layers, diagnostic_taps, draw_augmentation,
                    enter_training_mode, epoch_generator, learning_rate_and_stop, make_optimiser, optimiser_groups,
                    oracle_inputs, oracle_loss, oracle_of, regularised_loss, resolve_precision, start_run,
                    training_memory_format, write_results)

# Share of the device's free memory a stack may plan to use; the rest is headroom for the
# allocator's fragmentation and what the plan does not see.
MEMORY_HEADROOM = 0.8
# A run's checkpoint of the next epoch, written beside checkpoint.pt until every run of the stack
# has one (the first phase of a stack's save); then each replaces its checkpoint.pt.
NEXT_CHECKPOINT_NAME = "checkpoint.next.pt"


class PackMemoryError(RuntimeError):
    """A stack does not fit in the device's free memory; raised before training."""


class _Stopped(Exception):
    """``stop_after_epoch`` reached (tests: a job killed after that epoch's checkpoints)."""


class _StepModule(nn.Module):
    """A network and its regulariser as one module whose forward is one training step's loss
    (:func:`neurobias.train.regularised_loss`, or in an oracle's first stage
    :func:`neurobias.train.oracle_loss`): the function vmap maps over stacked tensors."""

    def __init__(self, net: nn.Module, regulariser: nn.Module | None, stimuli: torch.Tensor, device, precision: str):
        super().__init__()
        self.net, self.reg = net, regulariser
        self.bns = batchnorm_layers(net)
        self.stimuli, self.device, self.precision = stimuli, device, precision  # shared, not stacked
        self.pretraining = False  # in an oracle's first stage (set for each epoch)

    def forward(self, x, y, stimulus_rows, draws):
        """``draws``: the network's random numbers, this run's own (:class:`StepProfiles`); None:
        drawn as usual."""
        with random_draws.supplied(draws) if draws is not None else contextlib.nullcontext():
            if self.pretraining:
                loss, ce, penalty, logits = oracle_loss(self.net, self.reg, x, y, self.device, self.precision)
            else:
                loss, ce, penalty, logits = regularised_loss(self.net, self.reg, self.bns, x, y, stimulus_rows,
                                                             self.stimuli, self.device, self.precision)
        return loss, (ce, penalty, logits)


def _fp32_batchnorm(module: nn.Module) -> None:
    """BatchNorm in fp32 inside the stacked step: under autocast, vmap's batching rule for
    batch_norm fails on a bf16 input with fp32 statistics (torch 2.14), so the input is cast up
    and the output back to the input's dtype (the one-model loop's BatchNorm output dtype)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            original = m.forward
            m.forward = lambda x, _f=original: _f(x.float()).to(x.dtype)


def _stateless(module: nn.Module | None) -> nn.Module | None:
    """A structural copy of ``module`` on the meta device: functional_call fills in the tensors."""
    return None if module is None else copy.deepcopy(module).to("meta")


@dataclass
class _Run:
    """One run of a stack: its own network (views into the stacked tensors once stacked),
    regulariser, data, history and checkpoint."""
    index: int
    run: object  # neurobias.packed.PackedRun
    data: RunData | None
    model: nn.Module
    regulariser: nn.Module | None
    checkpoint: Checkpoint | None
    history: list
    best: BestEpoch | None
    optimiser_state: dict  # parameter name -> momentum buffer, from a resumed checkpoint
    scores: EpochScores | None = None
    failed: Exception | None = None
    random_state: tuple | None = None  # torch's global random state of the run's own job (_own_random_state)


def _global_random_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_global_random_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@contextlib.contextmanager
def _own_random_state(r: _Run, device: torch.device):
    """Inside, torch's global random state is run ``r``'s, as in its own job (where it is the only
    run): what its network draws (dropout, a VOneBlock's noise, an MTL readout's positions), what its
    scoring draws, and what its checkpoint saves. On leaving, the run keeps the advanced state."""
    outer = _global_random_state(device)
    _set_global_random_state(r.random_state, device)
    try:
        yield
    finally:
        r.random_state = _global_random_state(device)
        _set_global_random_state(outer, device)


@dataclass
class StepProfile:
    """What one kind of step of the one-model loop does besides its arithmetic: the random numbers
    its network draws (:mod:`.models.random_draws`), and the parameters its loss does not reach (an
    MTL head's on a step without a neural batch: their gradient is None, so that run's SGD leaves
    them alone, weight decay and momentum included)."""
    draws: list[random_draws.Draw]
    idle: list[str]


def profile_step(model: nn.Module, regulariser, x, y, stimulus_rows, stimuli: torch.Tensor, training, device,
                 precision: str, epoch: int = 0) -> StepProfile:
    """One step of epoch ``epoch`` of the one-model loop (in its layout,
    :func:`~neurobias.train.training_memory_format`, and its modes, an oracle's frozen core in
    evaluation mode) on copies of ``model`` and ``regulariser``: nothing of theirs, and not the
    global random state, changes."""
    layout, device = training_memory_format(training, model, device), torch.device(device)
    model, regulariser = copy.deepcopy(model).to(memory_format=layout), copy.deepcopy(regulariser)
    step_module = _StepModule(model, regulariser, stimuli.contiguous(memory_format=layout), device, precision)
    oracle = oracle_of(regulariser)
    step_module.train()
    enter_training_mode(model, oracle, epoch)
    step_module.pretraining = oracle is not None and oracle.in_pretraining(epoch)
    with forked_global_rng(device), random_draws.recording() as recorder:
        loss, _ = step_module(x.contiguous(memory_format=layout), y, list(stimulus_rows), None)
        loss.backward()
    return StepProfile(recorder.draws, [name for name, p in step_module.named_parameters()
                                        if p.requires_grad and p.grad is None])


class StepProfiles:
    """The :class:`StepProfile` of a stack's steps, one per kind (an oracle's first stage or not,
    the number ``k`` of stimulus batches), made on a copy of the stack's first run; and each run's
    own random numbers for a step, replayed from its own random state in the loop's order."""

    def __init__(self, first: _Run, stimuli: torch.Tensor, training, device, precision: str):
        # copied before the runs become views of the stack; a batch of its images for the shapes
        self.model, self.regulariser = copy.deepcopy(first.model), copy.deepcopy(first.regulariser)
        self.oracle = oracle_of(self.regulariser)
        n = min(training.batch_size, len(first.data.train_x))
        self.images, self.y = first.data.train_x[:n].to(device), first.data.train_y[:n].to(device)
        self.stimuli, self.training, self.device, self.precision = stimuli.to(device), training, device, precision
        self.profiles: dict[tuple[bool, int], StepProfile] = {}

    def kind(self, epoch: int, k: int) -> tuple[bool, int]:
        """(an oracle's first stage, k): what a step's draws and idle parameters depend on."""
        return self.oracle is not None and self.oracle.in_pretraining(epoch), k

    def inputs(self, epoch: int, k: int):
        """(x, y, stimulus rows [k, batch]) of a step of that kind, drawn from a throwaway
        generator: an oracle's first-stage images, or an augmented batch and its stimulus batches."""
        g = torch.Generator().manual_seed(0)
        no_rows = torch.zeros(0, 0, dtype=torch.long, device=self.images.device)
        if self.kind(epoch, k)[0]:
            return oracle_inputs(self.regulariser, self.images, self.training, g), self.y, no_rows
        x = augment(self.images.float() / 255.0, self.training, g)
        rows = torch.stack([self.regulariser.stimulus_batch(g).to(no_rows.device) for _ in range(k)]) if k else no_rows
        return x, self.y, rows

    def __call__(self, epoch: int, k: int) -> StepProfile:
        kind = self.kind(epoch, k)
        if kind not in self.profiles:
            self.profiles[kind] = profile_step(self.model, self.regulariser, *self.inputs(epoch, k), self.stimuli,
                                               self.training, self.device, self.precision, epoch)
        return self.profiles[kind]

    def draws(self, members: list[_Run], epoch: int, k: int) -> list[torch.Tensor]:
        """The runs' random numbers in a step of that kind (:func:`runs_draws`)."""
        return runs_draws(members, self(epoch, k).draws, self.device)


def runs_draws(members: list[_Run], recorded: list[random_draws.Draw], device) -> list[torch.Tensor]:
    """Per ``recorded`` draw, every run's tensor from its own random state (which advances as in
    its own job), stacked along a first dimension."""
    if not recorded:
        return []
    per_run = []
    for r in members:
        with _own_random_state(r, device):
            per_run.append(random_draws.replay(recorded))
    return [torch.stack(tensors) for tensors in zip(*per_run)]


class Stack:
    """N runs' tensors stacked along a new first dimension, and the per-run modules turned into
    views of them. ``params``/``buffers`` are keyed like the step module (``net.*``, ``reg.*``)."""

    def __init__(self, runs: list[_Run], stimuli: torch.Tensor, device, precision: str):
        first = runs[0]
        self.device = torch.device(device)
        self.step_module = _StepModule(_stateless(first.model), _stateless(first.regulariser), stimuli, device,
                                       precision)
        _fp32_batchnorm(self.step_module)
        step_modules = [_StepModule(r.model, r.regulariser, stimuli, device, precision) for r in runs]
        param_dicts = [dict(m.named_parameters()) for m in step_modules]
        self.params = {k: torch.stack([d[k].detach() for d in param_dicts]) for k in param_dicts[0]}
        buffer_dicts = [dict(m.named_buffers()) for m in step_modules]
        self.buffers = {k: torch.stack([d[k] for d in buffer_dicts]) for k in buffer_dicts[0]}
        # parameters that do not train (an oracle's core in its second stage): no gradient computed
        self.frozen = {name for name, p in param_dicts[0].items() if not p.requires_grad}
        for i, module in enumerate(step_modules):  # each run's modules now read and write the stack
            for name in self.params:
                view = nn.Parameter(self.params[name][i], requires_grad=param_dicts[i][name].requires_grad)
                _set_tensor(module, name, view)
            for name in self.buffers:
                _set_tensor(module, name, self.buffers[name][i])
        self._grad_and_loss = vmap(grad_and_value(self._loss, has_aux=True), randomness="error")

    def _loss(self, trained, frozen, buffers, x, y, stimulus_rows, draws):
        return functional_call(self.step_module, ({**trained, **frozen}, buffers), (x, y, stimulus_rows, draws))

    def freeze(self, names) -> None:
        """Stop training these parameters (an oracle entering its second stage)."""
        self.frozen |= set(names)
        for name in names:
            self.params[name].grad = None

    def step(self, x, y, stimulus_rows, draws=(), idle=()):
        """Every run's gradients (into ``.grad`` of the stacked parameters; None for the ``idle``
        ones, which the step's loss does not reach) and (loss, ce, penalty, logits), each with the
        run as first dimension. ``draws``: the runs' random numbers inside the network
        (:meth:`StepProfiles.draws`)."""
        trained = {name: p for name, p in self.params.items() if name not in self.frozen}
        frozen = {name: p for name, p in self.params.items() if name in self.frozen}
        grads, (loss, (ce, penalty, logits)) = self._grad_and_loss(trained, frozen, self.buffers, x, y,
                                                                   stimulus_rows, draws)
        for name, g in grads.items():
            self.params[name].grad = None if name in idle else g
        return loss, ce, penalty, logits


def _set_tensor(module: nn.Module, dotted: str, tensor: torch.Tensor) -> None:
    *path, leaf = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    if isinstance(tensor, nn.Parameter):
        module._parameters[leaf] = tensor
    else:
        module._buffers[leaf] = tensor


def stacked_optimiser(stack: Stack, regulariser, training) -> torch.optim.SGD:
    """One SGD over the stacked tensors, grouped as :func:`neurobias.train.make_optimiser` groups one
    run's parameters (same weight decay per group; frozen ones left out), so each run's slice
    follows its own SGD."""
    net = [p for name, p in stack.params.items() if name.startswith("net.") and name not in stack.frozen]
    reg = [p for name, p in stack.params.items() if name.startswith("reg.")]
    return torch.optim.SGD(optimiser_groups(net, reg, regulariser, training), lr=training.lr,
                           momentum=training.momentum)


def run_optimiser(run: _Run, stack: Stack, optimiser: torch.optim.SGD, k: int, training, lr: float):
    """Run ``k``'s own SGD (its parameters, its slice of the momentum), for its checkpoint."""
    own = make_optimiser(run.model, run.regulariser, training)
    for group in own.param_groups:
        group["lr"] = lr
    views = _own_parameters(run)
    for name, tensor in stack.params.items():
        state = optimiser.state.get(tensor)
        if state and state.get("momentum_buffer") is not None:
            own.state[views[name]]["momentum_buffer"] = state["momentum_buffer"][k]
    return own


def _own_parameters(run: _Run) -> dict:
    named = {f"net.{k}": p for k, p in run.model.named_parameters()}
    if run.regulariser is not None:
        named.update({f"reg.{k}": p for k, p in run.regulariser.named_parameters()})
    return named


# -- memory --------------------------------------------------------------------------------------------
def available_memory(device: torch.device) -> int | None:
    """Free bytes on the device: CUDA's free memory (after handing back what its caching allocator
    holds unused), or the host's MemAvailable on a CPU (None if unknown)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class MemoryPlan:
    per_run_bytes: int  # what each further run of a stack adds
    shared_bytes: int  # the training images and stimuli on the device, once per stack
    available_bytes: int | None
    how: str  # "measured" (the device's allocator) or "estimated" (counted, see memory_plan)

    def fitting(self) -> int | None:
        """How many runs fit (None: the device does not say how much memory it has)."""
        if self.available_bytes is None:
            return None
        return max(0, int((MEMORY_HEADROOM * self.available_bytes - self.shared_bytes) // self.per_run_bytes))

    def describe(self, n: int) -> str:
        gib = 2 ** 30
        free = ("the device does not report its free memory" if self.available_bytes is None else
                f"{MEMORY_HEADROOM:.0%} of the {self.available_bytes / gib:.2f} GiB free is planned")
        return (f"{n} runs need about {(self.shared_bytes + n * self.per_run_bytes) / gib:.2f} GiB "
                f"({self.per_run_bytes / 2 ** 20:.1f} MiB per run, {self.how}, + {self.shared_bytes / 2 ** 20:.1f} MiB "
                f"shared data); {free}")


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class ProbeStep:
    """One step's inputs of one run (drawn from a throwaway generator), for :func:`memory_plan`:
    ``x``, ``y`` and ``stimulus_rows`` on the device; ``stimuli`` the stimulus inputs on the
    device; ``draws`` the network's random numbers in that step (:func:`profile_step`);
    ``shared_bytes`` what a stack holds once (training images and stimuli); ``pretraining``: a
    step of an oracle's first stage (the batch and its corrupted images' second versions)."""
    x: torch.Tensor
    y: torch.Tensor
    stimulus_rows: torch.Tensor
    stimuli: torch.Tensor
    draws: list[torch.Tensor]
    shared_bytes: int
    pretraining: bool = False

    @classmethod
    def of(cls, r: _Run, stimuli: torch.Tensor, training, device) -> "ProbeStep":
        """The largest step of the run from where it starts (an oracle's first stage is larger
        than its second; the most stimulus batches of the first steps)."""
        device = torch.device(device)
        profiles = StepProfiles(r, stimuli, training, device, resolve_precision(training.precision, device))
        epoch, reg = len(r.history), r.regulariser
        batches = max(reg.stimulus_batches(0, s) for s in range(2)) if reg is not None else 0
        x, y, rows = profiles.inputs(epoch, batches)
        with forked_global_rng(device):
            draws = random_draws.replay(profiles(epoch, batches).draws)
        return cls(x, y, rows, profiles.stimuli, draws, _tensor_bytes([r.data.train_x, stimuli]),
                   profiles.kind(epoch, batches)[0])


# On a CPU no allocator reports a peak, so the plan counts tensors (:func:`_counted_per_run`) and
# scales the count by this ratio, measured on the 2-core reference machine for the demo net
# (ResNet-18 w8, batch 64, a similarity arm on layer3): the peak resident memory of a stacked step
# grew by 197.7 MiB per run (stacks of 4 and 12) where 59.8 MiB are counted; the rest is vmap's
# and oneDNN's temporaries.
CPU_ALLOCATION_FACTOR = 3.5


def _counted_per_run(run: _Run, probe: ProbeStep, device, precision: str) -> int:
    """One run's tensors in a step, counted on one step of a copy of the run alone: what autograd
    keeps for the backward pass (``saved_tensors_hooks``, each storage once), four copies of the
    parameters (weights, gradients, momentum, the update's temporary), the buffers and the batch."""
    module = _StepModule(copy.deepcopy(run.model), copy.deepcopy(run.regulariser), probe.stimuli, device, precision)
    module.pretraining = probe.pretraining
    seen: dict[int, int] = {}

    def keep(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss, _ = module(probe.x, probe.y, probe.stimulus_rows, probe.draws)
    loss.backward()
    return (sum(seen.values()) + 4 * _tensor_bytes(module.parameters()) + _tensor_bytes(module.buffers())
            + _tensor_bytes([probe.x, probe.y, probe.stimulus_rows]))


def _measured_per_run_cuda(run: _Run, probe: ProbeStep, training, device, precision: str) -> int:
    """What a second run adds to the peak of a stacked step and its SGD update (the run's own
    optimiser settings, at rate 0), measured by CUDA's allocator on stacks of one and two copies of
    the run, after an unmeasured warm-up step (which leaves the allocator's and the libraries'
    one-time workspaces behind, so that neither measurement counts them)."""
    peaks = []
    for n in (1, 1, 2):  # the first is the warm-up
        copies = [_Run(i, None, None, copy.deepcopy(run.model), copy.deepcopy(run.regulariser), None, [], None, {})
                  for i in range(n)]
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        stack = Stack(copies, probe.stimuli, device, precision)
        stack.step_module.pretraining = probe.pretraining
        optimiser = stacked_optimiser(stack, copies[0].regulariser, training)
        for group in optimiser.param_groups:
            group["lr"] = 0.0
        stack.step(*(torch.stack([t] * n) for t in (probe.x, probe.y, probe.stimulus_rows)),
                   [torch.stack([d] * n) for d in probe.draws])
        optimiser.step()
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - before)
        del stack, optimiser, copies
    return peaks[2] - peaks[1]


def memory_plan(run: _Run, probe: ProbeStep, training, device, precision: str) -> MemoryPlan:
    """One run's share of a stack, from one step of ``probe`` (the networks are copied, nothing of
    the run changes): measured by the allocator on a GPU (never below the count), counted and
    scaled (:data:`CPU_ALLOCATION_FACTOR`) elsewhere."""
    device = torch.device(device)
    counted = _counted_per_run(run, probe, device, precision)
    if device.type == "cuda":
        per_run, how = max(counted, _measured_per_run_cuda(run, probe, training, device, precision)), "measured"
    else:
        per_run, how = int(CPU_ALLOCATION_FACTOR * counted), "estimated"
    return MemoryPlan(per_run, probe.shared_bytes, available_memory(device), how)


def check_fits(plan: MemoryPlan, n: int, device) -> None:
    fitting = plan.fitting()
    if fitting is not None and n > fitting:
        advice = (f"at most {fitting} fit: set the study's pack to {fitting} (or pack: auto, which splits a "
                  f"job's runs into stacks that fit)") if fitting else "not even one run fits: use a larger device"
        raise PackMemoryError(f"pack_engine stacked on {device}: {plan.describe(n)}; {advice}")


def split_evenly(members: list, n_stacks: int) -> list[list]:
    """``members`` in ``n_stacks`` consecutive stacks whose sizes differ by at most one."""
    size, extra = divmod(len(members), n_stacks)
    bounds = [0]
    for i in range(n_stacks):
        bounds.append(bounds[-1] + size + (i < extra))
    return [members[a:b] for a, b in zip(bounds, bounds[1:])]


# -- checkpoints of a stack ----------------------------------------------------------------------------
def _save_checkpoints(live: list[tuple[int, _Run]], epoch: int, stack: Stack, optimiser, training, lr: float) -> None:
    """Every live run's checkpoint after ``epoch``, in two phases: first each run's next checkpoint
    beside its checkpoint.pt (naming the stack's runs), then each replaces its checkpoint.pt. A
    kill in the first phase leaves every run at the previous epoch, one in the second every run's
    new state on disk: :func:`recover_interrupted_save` finishes or discards it."""
    members = [str(r.run.out_dir) for _, r in live]
    for k, r in live:
        with _own_random_state(r, stack.device):  # the random state the run's own job would save
            r.checkpoint.save(epoch, r.model, run_optimiser(r, stack, optimiser, k, training, lr), r.regulariser,
                              r.history, r.best.state, path=Path(r.run.out_dir) / NEXT_CHECKPOINT_NAME,
                              extra={"stack": members})
    for _, r in live:
        os.replace(Path(r.run.out_dir) / NEXT_CHECKPOINT_NAME, Path(r.run.out_dir) / CHECKPOINT_NAME)


def _saved_epoch(path: Path) -> int | None:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"] if path.exists() else None


def recover_interrupted_save(out_dirs) -> None:
    """Finish or discard a stack's save that a kill interrupted (:func:`_save_checkpoints`): when
    every run of the stack that a next checkpoint names has that epoch on disk (as its next
    checkpoint or already as its checkpoint.pt), the second phase had begun and is finished;
    otherwise the first phase had not ended and the next checkpoints are removed. Either way every
    run of the stack resumes at the same epoch, in a stack of the same runs."""
    for out_dir in map(Path, out_dirs):
        first = out_dir / NEXT_CHECKPOINT_NAME
        if not first.exists():
            continue
        saved = torch.load(first, map_location="cpu", weights_only=True)
        members, epoch = [Path(m) for m in saved["stack"]], saved["epoch"]
        complete = all(epoch in (_saved_epoch(m / NEXT_CHECKPOINT_NAME), _saved_epoch(m / CHECKPOINT_NAME))
                       for m in members)
        for m in members:
            if (m / NEXT_CHECKPOINT_NAME).exists():
                if complete:
                    os.replace(m / NEXT_CHECKPOINT_NAME, m / CHECKPOINT_NAME)
                else:
                    (m / NEXT_CHECKPOINT_NAME).unlink()
        print(f"stacked engine: a save interrupted after epoch {epoch + 1} was "
              f"{'finished' if complete else 'discarded'} for {len(members)} runs", flush=True)


# -- the stacked loop ----------------------------------------------------------------------------------
def train_stacked(runs, *, training, device, progress: bool, fit: str = "error", on_finished=None,
                  stop_after_epoch: int | None = None, **shared) -> list[tuple[Path, Exception]]:
    """Train ``runs`` (:class:`neurobias.packed.PackedRun`) as stacks: runs with the same
    :func:`~neurobias.stacking_rules.stack_key` and the same epoch to resume from train side by
    side. ``fit``: "error" stops before training when a stack does not fit in the device's memory,
    "split" trains it as several stacks that do (``pack: auto``). Returns the runs that failed (a
    diverging loss), after training every other run; ``on_finished(index, started)`` runs after
    each run's files are written. ``stop_after_epoch`` (tests) ends the whole call once the first
    stack has saved that epoch, as a kill would, without writing any run's files."""
    for run in runs:
        reason = unsupported_reason(run.arm, run.model_cfg, {"lr_schedule": training.lr_schedule})
        if reason:
            raise ValueError(f"pack_engine stacked cannot train {run.out_dir}: {reason}; use pack_engine: sequential")
    device = torch.device(device)
    recover_interrupted_save([run.out_dir for run in runs])
    images = shared["train"][0]  # every run's stimulus inputs, made once
    stimuli = stimuli_as_inputs(shared["stimuli"], images.shape[1], images.shape[-1])
    prepared = [_prepare(k, run, training, device, shared, stimuli) for k, run in enumerate(runs)]
    # a killed job's written runs (an oracle's epochs include its first stage's)
    finished = [r for r in prepared if len(r.history) >= training.total_epochs(oracle_of(r.regulariser))]
    groups: dict[tuple, list[_Run]] = {}
    for r in prepared:
        if r not in finished:
            groups.setdefault((stack_key(r.run.arm, r.run.model_cfg, r.run.context), len(r.history)), []).append(r)
    # every stack is planned (and a stack too large refused) before the first one trains
    stacks = [chunk for members in groups.values() for chunk in _chunks(members, stimuli, training, device, fit)]
    for r in finished:
        _write_run(r, on_finished, started=time.time())
    failed = []
    stimuli = stimuli.to(device)
    try:
        for members in stacks:
            failed += _train_stack(members, stimuli, training, device, progress, on_finished, stop_after_epoch)
            _release(members, device)
    except _Stopped:
        return []
    return failed


def _prepare(k: int, run, training, device, shared, stimuli: torch.Tensor) -> _Run:
    """Run ``k``'s data, network, regulariser and resumed state, started as
    :func:`~neurobias.train.train_arm` starts a run (:func:`~neurobias.train.start_run`)."""
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = RunData.prepare(train=shared["train"], val=shared["val"], test=shared.get("test"),
                           stimuli=shared["stimuli"], stimulus_tiers=shared["stimulus_tiers"], target=run.target,
                           diagnostic_target=shared["diagnostic_target"],
                           superclass_of_class=shared.get("superclass_of_class"),
                           responses=run.context.get("responses"), label_noise=run.arm.get("label_noise"),
                           seed=run.seed)
    # NCHW: the stack's tensors gain a leading run dimension, and channels_last is a 4-D layout
    start = start_run(data, arm=run.arm, model_cfg=run.model_cfg, training=training, seed=run.seed, device=device,
                      out_dir=out_dir, context=run.context, memory_format=torch.contiguous_format, engine="stacked",
                      stimuli=stimuli)
    random_layers = [name for name, m in start.model.named_modules()
                     if isinstance(m, nn.modules.dropout._DropoutNd) and not isinstance(m, random_draws.Dropout)
                     and m.p > 0]
    if random_layers:  # a network brought by the user
        raise ValueError(f"pack_engine stacked cannot train {out_dir}: the network's {random_layers} draw random "
                         "numbers directly from torch (torch.nn dropout), which vmap cannot draw per run as its own "
                         "job does; use neurobias.models.random_draws.Dropout, or pack_engine: sequential")
    prepared = _Run(k, run, data, start.model, start.regulariser, start.checkpoint, start.history, start.best, {},
                    random_state=_global_random_state(device))  # as its own job's after the same start
    name_of = {id(p): name for name, p in _own_parameters(prepared).items()}
    prepared.optimiser_state = {name_of[id(p)]: state["momentum_buffer"] for p, state in start.optimiser.state.items()
                                if state.get("momentum_buffer") is not None}
    return prepared


def _chunks(members: list[_Run], stimuli: torch.Tensor, training, device, fit: str) -> list[list[_Run]]:
    """The members as stacks that fit the device (``fit`` "split"), or as one stack that must."""
    precision = resolve_precision(training.precision, device)
    plan = memory_plan(members[0], ProbeStep.of(members[0], stimuli, training, device), training, device, precision)
    fitting = plan.fitting()
    print(f"stacked engine: {plan.describe(len(members))}", flush=True)
    if fit == "split" and fitting:
        return split_evenly(members, math.ceil(len(members) / fitting))
    check_fits(plan, len(members), device)
    return [members]


def _release(members: list[_Run], device: torch.device) -> None:
    """Give a trained stack's memory back before the next stack trains (every stack was planned on
    the memory free before the first): its runs are written, so their networks, regularisers and
    scorers (views of the stack's tensors) are dropped, and the stack itself, a reference cycle
    (its vmapped loss holds a bound method), is collected."""
    for r in members:
        r.model = r.regulariser = r.scores = r.data = None
        r.optimiser_state = {}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _write_run(r: _Run, on_finished, started: float) -> None:
    """Run ``r``'s model.pt and history.csv (its best epoch's weights where the schedule keeps them)."""
    frame = r.best.restore(r.model, r.regulariser, r.history)
    write_results(Path(r.run.out_dir), r.model, r.run.model_cfg, r.data, r.regulariser, frame)
    if on_finished is not None:
        on_finished(r.index, started)


def _train_stack(members: list[_Run], stimuli: torch.Tensor, training, device, progress: bool, on_finished,
                 stop_after_epoch):
    """Train one stack (``stimuli``: the stimulus inputs on the device); returns its failed runs."""
    started = time.time()
    precision = resolve_precision(training.precision, device)
    first = members[0]
    print(f"stacked engine: {len(members)} runs side by side: " + ", ".join(str(r.run.out_dir) for r in members),
          flush=True)
    profiles = StepProfiles(first, stimuli, training, device, precision)  # before the runs become views of the stack
    stack = Stack(members, stimuli, device, precision)
    optimiser = stacked_optimiser(stack, first.regulariser, training)
    for name, p in stack.params.items():  # a resumed stack continues each run's momentum
        if all(name in r.optimiser_state for r in members):
            optimiser.state[p]["momentum_buffer"] = torch.stack([r.optimiser_state[name] for r in members]).to(p)
    # scored on the stimuli in the one-model loop's layout: a VOneBlock draws its noise in it
    scored_stimuli = stimuli.contiguous(memory_format=training_memory_format(training, first.model, device))
    for r in members:
        r.optimiser_state = {}  # now in the stacked optimiser
        r.scores = EpochScores(r.model, r.regulariser, r.data, scored_stimuli,
                               diagnostic_taps(r.run.arm, r.run.model_cfg), training, device)
    run_epoch = StackedEpoch(stack, members, profiles, training, device)
    oracle = oracle_of(first.regulariser)
    for epoch in range(len(first.history), training.total_epochs(oracle)):
        lr, _ = learning_rate_and_stop(training, epoch, first.history, oracle)
        generators = [epoch_generator(r.run.seed, epoch) for r in members]
        if oracle is not None and epoch == oracle.pretrain_epochs:
            optimiser = _enter_second_stage(stack, members, generators, training)
        for group in optimiser.param_groups:
            group["lr"] = lr
        losses, sums = run_epoch(epoch, optimiser, generators)
        live = [(k, r) for k, r in enumerate(members)
                if r.failed is None and _score(r, epoch, lr, losses[k], sums[k], training, device, progress)]
        _save_checkpoints(live, epoch, stack, optimiser, training, lr)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            raise _Stopped
        if not live:
            break  # every run of the stack has failed
    share = (time.time() - started) / len(members)  # each run's provenance gets its share of the stack's time
    for r in members:
        if r.failed is None:
            _write_run(r, on_finished, started=time.time() - share)
    return [(Path(r.run.out_dir), r.failed) for r in members if r.failed is not None]


def _enter_second_stage(stack: Stack, members: list[_Run], generators, training) -> torch.optim.SGD:
    """The oracle's switch, as in each run's own job: its core frozen, the rest re-initialised
    (drawn from its epoch generator; the views write into the stack) and its best epoch forgotten;
    a fresh SGD over what still trains."""
    for r, g in zip(members, generators):
        with _own_random_state(r, stack.device):
            r.regulariser.enter_second_stage(r.model, g, reinitialise=True)
        r.best.reset()
    stack.freeze(name for name, p in _own_parameters(members[0]).items() if not p.requires_grad)
    return stacked_optimiser(stack, members[0].regulariser, training)


class StackedEpoch:
    """One epoch's steps of a stack, as :class:`neurobias.train.EpochStep` takes them for one run:
    every run draws its batch order, augmentation and stimulus batches from its own epoch generator
    in that loop's order; the draws are then applied to all runs at once (one gather, one
    augmentation call, one stacked step)."""

    def __init__(self, stack: Stack, members: list[_Run], profiles: StepProfiles, training, device):
        self.stack, self.members, self.profiles = stack, members, profiles
        self.training, self.device = training, device
        self.train_x = members[0].data.train_x.to(device)  # the same images for every run
        self.train_y = torch.stack([r.data.train_y for r in members]).to(device)  # each run's labels
        self.steps = len(self.train_x) // training.batch_size  # drop the ragged last batch, as EpochStep
        self.term = penalty_term(members[0].run.arm)

    def __call__(self, epoch: int, optimiser, generators) -> tuple[list[StepLosses], torch.Tensor]:
        """Per run its :class:`~neurobias.train.StepLosses` (checked by the caller) and its
        epoch sums [loss, ce, penalty, correct, active steps]; ``generators``: each run's epoch
        generator."""
        training, device, n, bs = self.training, self.device, len(self.members), self.training.batch_size
        regulariser = self.members[0].regulariser
        oracle = oracle_of(regulariser)
        pretraining = oracle is not None and oracle.in_pretraining(epoch)
        orders = torch.stack([torch.randperm(len(self.train_x), generator=g) for g in generators]).to(device)
        step_module = self.stack.step_module
        # BatchNorm normalises with each batch's statistics and updates its own (an oracle's frozen core excepted)
        step_module.train()
        enter_training_mode(step_module.net, oracle, epoch)
        step_module.pretraining = pretraining
        values = torch.zeros(n, self.steps, 3, device=device)  # per run and step: ce, penalty, total
        sums = torch.zeros(n, 5, device=device)
        for step in range(self.steps):
            idx = orders[:, step * bs:(step + 1) * bs]
            y = torch.gather(self.train_y, 1, idx)
            if pretraining:  # each run's corruptions and augmentation, drawn as in its own job
                x = torch.stack([oracle_inputs(r.regulariser, self.train_x[i], training, g)
                                 for r, i, g in zip(self.members, idx, generators)])
            else:
                draws = [draw_augmentation(bs, training, g) for g in generators]
                x = apply_augmentation(self.train_x[idx.flatten()].float() / 255.0, training,
                                       {key: torch.cat([d[key] for d in draws]) for key in draws[0]})
                x = x.reshape(n, bs, *x.shape[1:])
            batches = regulariser.stimulus_batches(epoch, step) if regulariser is not None else 0
            rows = torch.stack([torch.stack([r.regulariser.stimulus_batch(g) for _ in range(batches)])
                                if batches else torch.zeros(0, 0, dtype=torch.long, device=device)
                                for r, g in zip(self.members, generators)]).to(device)
            loss, ce, penalty, logits = self.stack.step(x, y, rows, self.profiles.draws(self.members, epoch, batches),
                                                        idle=self.profiles(epoch, batches).idle)
            optimiser.step()
            values[:, step] = torch.stack([ce, penalty, loss], 1).detach()
            correct = (logits.detach().argmax(-1) == y).sum(1).float()
            sums += torch.stack([loss.detach(), ce.detach(), penalty.detach(), correct,
                                 torch.full_like(correct, float(pretraining or batches > 0))], 1)
        return [StepLosses(self.steps, device, self.term, eager=False, values=values[k]) for k in range(n)], sums


def _score(r: _Run, epoch: int, lr: float, losses: StepLosses, sums: torch.Tensor, training, device,
           progress: bool) -> bool:
    """Run ``r``'s history row and best epoch after ``epoch``, as its own job makes them; False (and
    the run marked failed, the others going on) when one of its losses was not finite."""
    try:
        losses.check(epoch)
        loss, ce, penalty, correct, n_active = sums.tolist()
        epoch_sums = EpochSums(loss, ce, penalty, correct, n_active=int(n_active), steps=len(losses.values),
                               batch_size=training.batch_size)
        with _own_random_state(r, device):  # a stochastic network scores with its own job's draws
            scores = r.scores(epoch)
        row = {"epoch": epoch + 1, "lr": lr, **epoch_sums.history_entries(), **scores}
    except NonFiniteLossError as error:
        print(f"stacked engine: {r.run.out_dir} failed: {error}", flush=True)
        r.failed = error
        return False
    r.history.append(row)
    if progress:
        print(f"{r.run.out_dir}: " + json.dumps(row), flush=True)
    r.best.update(epoch + 1, row["val_accuracy"], r.model, r.regulariser)
    return True
