import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import adversarial_figure, job_environment

study = snakemake.wildcards.study
with job_environment(snakemake.log[0], snakemake.threads):
    adversarial_figure(snakemake.input.csvs, snakemake.input.tests, study, snakemake.config["studies"][study],
                       snakemake.output.pdf, snakemake.output.png)
