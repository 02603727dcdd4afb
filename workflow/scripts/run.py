"""The one script every rule runs: :func:`neurobias.jobs.run` calls the job function named after
the rule with keyword arguments named after the rule's input, output and params entries."""

import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import run

run(snakemake)  # noqa: F821  (the object Snakemake gives a rule's script)
