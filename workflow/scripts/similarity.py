import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, similarity_target

with job_environment(snakemake.log[0], snakemake.threads):
    similarity_target(snakemake.wildcards.kind, snakemake.input.recording, snakemake.input.v1model or None,
                      snakemake.output[0], shuffle_seed=snakemake.params.shuffle_seed,
                      model_similarity_path=snakemake.input.model_similarity or None,
                      vgg_weights_path=snakemake.input.vgg_weights or None, image_size=snakemake.params.image_size,
                      rsm_metric=snakemake.params.rsm_metric, gaussian_other=snakemake.params.gaussian_other,
                      device=snakemake.config["device"])
