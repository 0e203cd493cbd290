# prune-tts: what pruning does to a reasoning LLM's test-time scaling.
#
#   snakemake --cores 8 results/tables/main.csv                               # the study (config/config.yaml)
#   snakemake --cores 2 --configfile config/demo.yaml results/tables/main.csv   # offline demo on a CPU
#
# This file validates the config, includes one rule file per stage and names the targets.

from pipeline import config as cfg

# A --configfile replaces the study grid rather than merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


for _path in workflow.configfiles:
    cfg.load_yaml(_path)  # refuses duplicate keys, which YAML would silently drop
config = cfg.prepare(config)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/prune.smk"
include: "rules/generate.smk"
include: "rules/grade.smk"
include: "rules/judge.smk"
include: "rules/aggregate.smk"


# Downloads and bookkeeping stay on the submitting node (the one with Hub access on clusters).
localrules:
    all,
    base_model,
    benchmark_data,
    calibration,
    aggregate,


onstart:
    preflight()


# The table, its pivots in the shape of paper A's tables, and the plots.
rule all:
    default_target: True
    input:
        final_targets(),
