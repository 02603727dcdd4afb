import _src_path  # noqa: F401  (neurobias from src/ when not installed)
import re

from neurobias.jobs import corruption_statistics, job_environment

wc = snakemake.wildcards
# {(arm, seed): path} from the paths themselves: .../corruptions/<arm>/seed<seed>_correct.npz
npz = {}
for path in snakemake.input.correct:
    arm, seed = re.search(r"/corruptions/([^/]+)/seed(\d+)_correct\.npz$", path).groups()
    npz[(arm, int(seed))] = path
with job_environment(snakemake.log[0], snakemake.threads):
    out = snakemake.output
    corruption_statistics(snakemake.input.csvs, npz, wc.study, snakemake.config["studies"][wc.study], out.accuracy,
                          out.scores, out.per_seed, out.models, out.regression)
