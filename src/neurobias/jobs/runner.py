"""The entry point of every rule, and the process a job runs in.

:func:`run` is what ``workflow/scripts/run.py`` calls: it looks the rule up in
:data:`neurobias.jobs.JOBS` and calls its function with the rule's named entries
(:func:`job_arguments`) inside :func:`job_environment` (the rule's log file and thread count;
a finished job script ends its process at once).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import traceback
from pathlib import Path


# -- the entry point of every rule ----------------------------------------------------------------
def job_arguments(named_sections) -> dict:
    """{name: value} of the named entries of a rule's input, output and params, in that order.

    Snakemake hands lists (input functions, expand) as its own list type and single paths as
    strings; jobs get plain lists and strings. A name used twice is a mistake in the rule."""
    kwargs: dict = {}
    for section in named_sections:
        for name, value in section.items():
            if name in kwargs:
                raise ValueError(f"the name {name!r} is used twice among the rule's input, output and params")
            kwargs[name] = list(value) if isinstance(value, list) else value
    return kwargs


def job_name(rule: str) -> str:
    """The job a rule runs: the rule's name, or for rules a loop generates (one per training pack,
    ``train_pack__<study>__<k>``) the part before the first ``__``."""
    return rule.split("__", 1)[0]


def run(smk) -> None:
    """Run the job of a rule: ``JOBS[rule](**input, **output, **params)`` inside
    :func:`job_environment` (log file, thread count)."""
    from ..plugins import load_plugins
    from . import JOBS  # built in the package's __init__ from every stage's module
    # the config's plugins, as the Snakefile loaded them: their declared kinds are built here
    load_plugins(smk.config.get("plugins") or [])
    job = JOBS[job_name(smk.rule)]
    kwargs = job_arguments((smk.input, smk.output, smk.params))
    if "progress" in inspect.signature(job).parameters:
        kwargs["progress"] = bool(smk.config["progress"])  # validated: the schema's default is filled
    with job_environment(smk.log[0] if smk.log else None, smk.threads):
        job(**kwargs)


# -- running inside a Snakemake job --------------------------------------------------------------
@contextlib.contextmanager
def job_environment(log_path: str | None, threads: int = 1):
    """Send stdout/stderr (tqdm included) to the rule's log and pin torch's CPU threads to the
    rule's ``threads`` so parallel jobs don't oversubscribe the cores.

    Inside a Snakemake job script, a job that succeeded ends its process right after the block
    (outputs and log are closed by then): the interpreter's normal shutdown with torch loaded
    takes ~0.6 s on the 2-core reference machine (freeing torch's modules, measured against
    ``os._exit``), paid by every one of the 115 jobs of the default run. Errors propagate as
    usual, and outside a Snakemake script (tests, notebooks) nothing is cut short."""
    _limit_threads(max(1, int(threads)))
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            except BaseException:
                traceback.print_exc()  # into the job's log; re-raised, so Snakemake shows it too
                raise
    else:
        yield
    if _in_snakemake_script():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _limit_threads(threads: int) -> None:
    """torch's intra-op threads for this job. torch is imported only by the jobs that use it
    (statistics and most figures do not: ~1.3 s saved each); OpenMP reads the variable when
    torch loads, and a torch already loaded is set directly."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _in_snakemake_script() -> bool:
    """True in the process Snakemake starts for a rule's ``script:`` (its ``snakemake`` object is
    a global of ``__main__``)."""
    return getattr(sys.modules.get("__main__"), "snakemake", None) is not None
