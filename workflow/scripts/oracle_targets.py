import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, oracle_targets

with job_environment(snakemake.log[0], snakemake.threads):
    oracle_targets(snakemake.input.oracle, snakemake.input.recording, snakemake.input.responses,
                   snakemake.params.cfg, snakemake.output[0], snakemake.config["device"])
