import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, make_recording

with job_environment(snakemake.log[0], snakemake.threads):
    make_recording(snakemake.wildcards.recording, snakemake.params.cfg, snakemake.output[0],
                   snakemake.input.archive or None)
