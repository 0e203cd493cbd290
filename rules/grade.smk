# Stage 5: answer grading.


rule grade:
    """Extract and grade every answer of one generation file, one worker process per thread."""
    input:
        generations="results/generations/{model}/{variant}/{benchmark}.parquet",
        data="results/data/{benchmark}.parquet",
    output:
        "results/grades/{model}/{variant}/{benchmark}.parquet",
    log:
        "results/logs/grade/{model}/{variant}/{benchmark}.log",
    benchmark:
        "results/logs/grade/{model}/{variant}/{benchmark}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    # grading.workers, or 8 (locally Snakemake lowers it to --cores)
    threads: config["grading"]["workers"] or 8
    params:
        spec=grading_spec,
    shell:
        "python -m pipeline.stages.grade --generations {input.generations} --benchmark {input.data} "
        "--spec {params.spec:q} --workers {threads} --out {output} > {log:q} 2>&1"
