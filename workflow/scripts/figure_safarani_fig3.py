import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import job_environment, safarani_fig3

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    i = snakemake.input
    safarani_fig3(wc.panel, i.scores, i.per_seed, i.models, i.regression, wc.study,
                  snakemake.config["studies"][wc.study], snakemake.output.pdf, snakemake.output.png)
