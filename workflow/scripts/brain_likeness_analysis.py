import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import brain_likeness_analysis, job_environment

with job_environment(snakemake.log[0], snakemake.threads):
    brain_likeness_analysis(snakemake.input.brain, snakemake.input.noise, snakemake.config["studies"],
                            snakemake.output.models, snakemake.output.correlations)
