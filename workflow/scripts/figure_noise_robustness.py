import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, noise_figure

study = snakemake.wildcards.study
with job_environment(snakemake.log[0], snakemake.threads):
    noise_figure(snakemake.input.summary, snakemake.input.tests, study, snakemake.config["studies"][study],
                 snakemake.output.pdf, snakemake.output.png, snakemake.input.test_split)
