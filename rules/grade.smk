# Stage 5: answer grading.


rule grade:
    """Extract and grade every answer of one generation file."""
    input:
        "results/generations/{model}/{variant}/{benchmark}.parquet",
    output:
        "results/grades/{model}/{variant}/{benchmark}.parquet",
    params:
        spec=grading_spec,
    threads: 2
    log:
        "results/logs/grade/{model}/{variant}/{benchmark}.log",
    benchmark:
        "results/logs/grade/{model}/{variant}/{benchmark}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{PYTHON} -m pipeline.grade --generations {input} --spec {params.spec:q} --out {output} > {log:q} 2>&1"
