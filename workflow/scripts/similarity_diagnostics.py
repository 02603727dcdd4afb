import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from pathlib import Path

from neurobias.jobs import job_environment, similarity_diagnostics

with job_environment(snakemake.log[0], snakemake.threads):
    similarity_diagnostics({Path(p).stem: p for p in snakemake.input.targets}, snakemake.input.recording,
                           snakemake.output[0])
