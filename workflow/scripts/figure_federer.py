import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import federer_figure, job_environment

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    federer_figure(wc.figure, snakemake.input.summary, snakemake.input.tests, wc.study,
                   snakemake.config["studies"][wc.study], snakemake.output.pdf, snakemake.output.png)
