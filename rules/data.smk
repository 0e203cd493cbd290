# Stage 1: base models, benchmarks and calibration data.


rule base_model:
    """Resolve a base model once: download from the Hub, check a local folder, or build the demo."""
    output:
        "results/models/{model}/model.json",
    params:
        spec=model_spec,
    log:
        "results/logs/base_model/{model}.log",
    benchmark:
        "results/logs/base_model/{model}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m pipeline.base_model --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule benchmark_data:
    """Load a benchmark into the normalised table (id, problem, answer, choices)."""
    output:
        "results/data/{benchmark}.parquet",
    params:
        spec=benchmark_spec,
    log:
        "results/logs/benchmark_data/{benchmark}.log",
    benchmark:
        "results/logs/benchmark_data/{benchmark}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m pipeline.benchmarks --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule calibration:
    """Sample calibration sequences with the model's tokenizer, once per (model, calibration)."""
    input:
        model=manifest_of,
    output:
        "results/calibration/{model}/{calibration}.parquet",
    params:
        spec=calibration_spec,
    log:
        "results/logs/calibration/{model}/{calibration}.log",
    benchmark:
        "results/logs/calibration/{model}/{calibration}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m pipeline.calibration --model {input.model} --spec {params.spec:q} "
        "--out {output} > {log:q} 2>&1"
