import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import evaluate_corruptions, job_environment

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    evaluate_corruptions(wc.study, wc.arm, int(wc.seed), snakemake.params.cfg, snakemake.input.model,
                         snakemake.input.history, snakemake.input.test, snakemake.output.csv,
                         snakemake.output.correct, snakemake.config["device"], snakemake.config["progress"])
