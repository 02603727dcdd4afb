"""Which runs the stacked engine (``pack_engine: stacked``, :mod:`neurobias.stacked`) can train
and which of them stack together: plain Python, apart from the engine's torch code, because config
validation (:func:`neurobias.config.validate_config`, run by the Snakefile while it builds the job
graph) checks every arm of a stacked study before any job starts.
"""

from __future__ import annotations

from .registry import regularisers


def stackable_regularisers() -> list[str]:
    """Regularisers whose step the engine maps over the stack: those declared ``stackable`` (every
    built-in one; tests/test_stacked.py shows that a stacked step is each run's own), and none."""
    return ["none", *(spec.name for spec in regularisers() if spec.stackable)]
# Schedules whose rate is a function of the epoch alone, the same for every run of a stack.
STACKABLE_SCHEDULES = ("constant", "cosine", "step")


def unsupported_reason(arm_cfg: dict, model_cfg: dict, training_cfg: dict) -> str | None:
    """Why the stacked engine cannot train this run (a sentence naming the field), or None.
    Random layers of the config's architectures (VGG's dropout, a VOneBlock's noise, an MTL
    readout's sampled positions) draw through :mod:`neurobias.models.random_draws`, which gives each
    run of a stack its own job's numbers, so they stack."""
    kind = arm_cfg.get("regulariser", "none") or "none"
    stackable = stackable_regularisers()
    if kind not in stackable:
        return (f"regulariser {kind!r}: the stacked engine trains {', '.join(stackable)} arms "
                "(a kind is declared stackable=True once a test shows that its stacked step is each run's own)")
    schedule = (training_cfg.get("lr_schedule") or {}).get("kind", "constant")
    if schedule not in STACKABLE_SCHEDULES:
        return (f"training.lr_schedule.kind {schedule!r}: each run's rate would follow its own validation history; "
                f"the stacked engine needs one of {', '.join(STACKABLE_SCHEDULES)}")
    return None


def stack_key(arm_cfg: dict, model_cfg: dict | None = None, context: dict | None = None) -> str:
    """Runs stack together when they train the same network (``model_cfg``) with the same step:
    their arms differ at most in the target and the label noise (data, not the computation) and
    their regulariser settings from the study (``context``, e.g. Federer's RSM metric) agree."""
    arm = sorted((k, v) for k, v in arm_cfg.items() if k not in ("target", "label_noise"))
    settings = sorted((k, v) for k, v in (context or {}).items() if k not in ("responses", "seed"))
    return repr((arm, sorted((model_cfg or {}).items()), settings))
