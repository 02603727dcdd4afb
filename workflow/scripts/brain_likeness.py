import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from neurobias.jobs import brain_likeness, job_environment

wc = snakemake.wildcards
study = snakemake.config["studies"][wc.study]
with job_environment(snakemake.log[0], snakemake.threads):
    brain_likeness(wc.study, study, wc.arm, dict(zip(study["seeds"], snakemake.input.models)), snakemake.input.test,
                   dict(zip(snakemake.params.recordings, snakemake.input.recordings)), snakemake.params.cfg,
                   snakemake.output[0], snakemake.config["device"], snakemake.config["progress"])
