import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import download, job_environment

key, entry = snakemake.params.entry
with job_environment(snakemake.log[0], snakemake.threads):
    download(entry, key, snakemake.output[0], snakemake.config["progress"])
