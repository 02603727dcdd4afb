import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import fit_v1_model, job_environment

with job_environment(snakemake.log[0], snakemake.threads):
    fit_v1_model(snakemake.input[0], snakemake.params.cfg, snakemake.output.model, snakemake.output.metrics,
                 snakemake.config["device"], snakemake.config["progress"])
