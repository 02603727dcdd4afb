import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import geirhos_figure, job_environment

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    geirhos_figure(snakemake.input.csvs, snakemake.input.test, wc.study, snakemake.config["studies"][wc.study], snakemake.output.pdf,
                   snakemake.output.png)
