# Stage 6: the tables researchers read.


rule aggregate:
    """One row per (model, variant, benchmark, budget); a missing cell is named, never dropped."""
    input:
        grades=all_grades(),
    output:
        "results/tables/main.csv",
    params:
        spec=table_spec,
    log:
        "results/logs/aggregate/main.log",
    benchmark:
        "results/logs/aggregate/main.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{PYTHON} -m pipeline.aggregate --grades {input.grades} --spec {params.spec:q} --out {output} > {log:q} 2>&1"
