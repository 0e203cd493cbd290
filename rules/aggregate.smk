# Stage 6: the tables and figures researchers read (gathered by `snakemake --report`).


rule aggregate:
    """One row per (model, variant, benchmark, budget); a missing cell is named, never dropped."""
    input:
        grades=all_grades(),
        perplexity=all_perplexities(),
        judgements=all_judgements(),
    output:
        table=report(
            "results/tables/main.csv",
            caption="../report/main_table.rst",
            category="Tables",
        ),
        pivots=pivot_outputs("csv"),
        markdown=pivot_outputs("md"),
        equal_compute=equal_compute_outputs(),
        claims=claims_outputs("csv"),
        claims_markdown=claims_outputs("md"),
        seeds=[f"results/tables/{name}" for name in tables.SEED_SPREAD],
    log:
        "results/logs/aggregate/main.log",
    benchmark:
        "results/logs/aggregate/main.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=table_spec,
        perplexity=perplexity_flag,
        judgements=judgements_flag,
    shell:
        "python -m pipeline.stages.aggregate --grades {input.grades} {params.perplexity} {params.judgements} "
        "--spec {params.spec:q} "
        "--out {output.table} > {log:q} 2>&1"


rule plots:
    """Per model: accuracy against budget, sparsity and compute, the claims' forest plots;
    the spread across training seeds; the GPU lease timeline."""
    input:
        table="results/tables/main.csv",
        claims=[f"results/tables/claims-{model}.csv" for model in config["models"]],
    output:
        budget_png=plot_outputs("accuracy_vs_budget", "png"),
        budget_svg=plot_outputs("accuracy_vs_budget", "svg"),
        sparsity_png=plot_outputs("accuracy_vs_sparsity", "png"),
        sparsity_svg=plot_outputs("accuracy_vs_sparsity", "svg"),
        compute_png=plot_outputs("accuracy_vs_compute", "png"),
        compute_svg=plot_outputs("accuracy_vs_compute", "svg"),
        timeline=gpu_timeline_outputs(),
        seeds=seed_plot_outputs(),
        forest_png=forest_outputs("png"),
        forest_svg=forest_outputs("svg"),
    log:
        "results/logs/plots/plots.log",
    benchmark:
        "results/logs/plots/plots.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=table_spec,
    shell:
        "python -m pipeline.stages.plots --table {input.table} --claims {input.claims} --spec {params.spec:q} "
        "--out-dir results/plots "
        "--leases results/logs/gpus.jsonl > {log:q} 2>&1"
