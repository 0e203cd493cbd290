"""The workflow's stages: one module per Snakemake rule, each run as `python -m pipeline.stages.<name>`."""
