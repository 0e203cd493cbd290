# prune-tts: what pruning does to a reasoning LLM's test-time scaling.
#
#   snakemake --cores 8 results/tables/main.csv                               # the study (config/config.yaml)
#   snakemake --cores 2 all --configfile config/demo.yaml                     # offline demo on a CPU
#
# This file validates the config, includes one rule file per stage and names the targets.

from pipeline import preflight
from pipeline.core import config as cfg

# A --configfile replaces the study grid rather than merging into it. Refusals print one line
# per problem and exit; PRUNE_TTS_VERBOSE=1 adds the traceback.
if not workflow.overwrite_configfiles:
    # names the line and column of a YAML error, which Snakemake's own loader does not
    cfg.or_exit(cfg.load_yaml, "config/config.yaml")

    configfile: "config/config.yaml"


config = cfg.or_exit(cfg.workflow_config, config, workflow.configfiles)


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
    allocation,
    benchmark_data,
    calibration,
    aggregate,


# Once the jobs are known, in dry runs as in real runs: every problem they would meet, before any starts.
preflight.install(config, workflow)


# The table, its pivots in the shape of paper A's tables, and the plots.
rule all:
    default_target: True
    input:
        final_targets(),
