# Stage 5b (grading.judge.enabled): a judge's second opinion, beside the deterministic grades.


rule judge:
    """Ask an OpenAI-compatible judge about one grades file; verdicts cached as they arrive."""
    input:
        grades="results/grades/{model}/{variant}/{benchmark}.parquet",
        generations="results/generations/{model}/{variant}/{benchmark}.parquet",
    output:
        "results/judgements/{model}/{variant}/{benchmark}.parquet",
    log:
        "results/logs/judge/{model}/{variant}/{benchmark}.log",
    benchmark:
        "results/logs/judge/{model}/{variant}/{benchmark}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=judge_spec,
    shell:
        "python -m pipeline.stages.judge --grades {input.grades} --generations {input.generations} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule judge_disagreements:
    """Every answer where the judge and the deterministic grader differ."""
    input:
        all_judgements(),
    output:
        report(
            "results/tables/judge_disagreements.csv",
            caption="../report/judge_disagreements.rst",
            category="Tables",
        ),
    log:
        "results/logs/judge/disagreements.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m pipeline.stages.judge --disagreements {input} --out {output} > {log:q} 2>&1"
