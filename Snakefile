# neurobias: brain-inspired regularisers for vision models, from data to figures.
# The rule graph is the table of contents; each file in workflow/rules is one stage.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line (a study preset, the test config) replaces config.yaml
# instead of being merged into it, so `rule all` builds exactly the studies that file names.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# `snakemake --report report.zip`: every figure with its caption and the statistics tables,
# grouped by study (captions in report/).
report: "report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/recording.smk"
include: "workflow/rules/v1model.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/brain_likeness.smk"


rule all:
    default_target: True
    input:
        all_targets(),
