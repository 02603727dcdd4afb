import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from itertools import product

from neurobias.jobs import job_environment, learning_curve_statistics

study = snakemake.config["studies"][snakemake.wildcards.study]
paths = dict(zip(product(study["arms"], study["seeds"]), snakemake.input))  # the rule's expand() order
with job_environment(snakemake.log[0], snakemake.threads):
    learning_curve_statistics(paths, snakemake.wildcards.study, study, snakemake.output.tidy,
                              snakemake.output.summary, snakemake.output.tests)
