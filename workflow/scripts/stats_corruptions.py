import _src_path  # noqa: F401  (neurobias from src/ when not installed)
from pathlib import Path

from neurobias.jobs import corruption_statistics, job_environment

wc = snakemake.wildcards
# {arm: path} from the paths themselves: .../corruptions/<arm>_correct.npz
npz = {Path(p).name[: -len("_correct.npz")]: p for p in snakemake.input.correct}
with job_environment(snakemake.log[0], snakemake.threads):
    out = snakemake.output
    corruption_statistics(snakemake.input.csvs, npz, wc.study, snakemake.config["studies"][wc.study], out.accuracy,
                          out.scores, out.per_seed, out.models, out.regression)
