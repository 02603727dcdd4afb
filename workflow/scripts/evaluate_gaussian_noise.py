import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import evaluate_gaussian_noise, job_environment

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    evaluate_gaussian_noise(wc.study, wc.arm, list(snakemake.params.seeds), snakemake.params.cfg,
                            snakemake.input.models, snakemake.input.test, snakemake.output[0],
                            snakemake.config["device"], snakemake.config["progress"])
