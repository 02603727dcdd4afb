import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.config import example_arms
from neurobias.jobs import job_environment, safarani_fig2

wc = snakemake.wildcards
study = snakemake.config["studies"][wc.study]
arms = list(dict.fromkeys(example_arms(study)))
with job_environment(snakemake.log[0], snakemake.threads):
    safarani_fig2(snakemake.input.scores, dict(zip(arms, snakemake.input.models)), snakemake.input.test, wc.study,
                  study, snakemake.output.pdf, snakemake.output.png, snakemake.config["device"])
