import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, statistics

with job_environment(snakemake.log[0], snakemake.threads):
    statistics(snakemake.input, snakemake.params.baseline, snakemake.output.summary, snakemake.output.tests,
               snakemake.params.controls)
