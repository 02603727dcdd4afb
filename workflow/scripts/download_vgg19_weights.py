import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from pathlib import Path

from neurobias.jobs import job_environment
from neurobias.neural.vgg_similarity import download_vgg19_weights

with job_environment(snakemake.log[0], snakemake.threads):
    download_vgg19_weights(Path(snakemake.output[0]).parent)
