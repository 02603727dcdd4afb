import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, simulate_recording

with job_environment(snakemake.log[0], snakemake.threads):
    simulate_recording(snakemake.params.cfg, snakemake.output[0])
