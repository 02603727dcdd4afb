import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from pathlib import Path

from neurobias.jobs import job_environment, train

wc = snakemake.wildcards
with job_environment(snakemake.log[0], snakemake.threads):
    train(snakemake.config["studies"][wc.study], wc.arm, int(wc.seed), Path(snakemake.input.data[0]).parent,
          snakemake.input.recording, snakemake.input.target or None, snakemake.input.diagnostic_target,
          Path(snakemake.output.model).parent, snakemake.config["device"], snakemake.config["progress"],
          test_path=snakemake.input.test_split or None)
