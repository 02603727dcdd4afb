import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from pathlib import Path

from neurobias.jobs import job_environment, make_dataset

with job_environment(snakemake.log[0], snakemake.threads):
    make_dataset(snakemake.wildcards.dataset, snakemake.params.cfg, Path(snakemake.output.train).parent,
                 snakemake.input.archive or None)
