import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import dapello_figure, job_environment

with job_environment(snakemake.log[0], snakemake.threads):
    dapello_figure(snakemake.input.models, snakemake.input.correlations, snakemake.config,
                   snakemake.output.pdf, snakemake.output.png)
