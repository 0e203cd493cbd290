# Stage 4: test-time scaling generation with vLLM (budget forcing over all budgets and seeds).


rule generate:
    """One engine start per (model, variant, benchmark): every seed, sample and budget."""
    input:
        model=weights_for_generation,
        benchmark="results/data/{benchmark}.parquet",
    output:
        "results/generations/{model}/{variant}/{benchmark}.parquet",
    log:
        "results/logs/generate/{model}/{variant}/{benchmark}.log",
    benchmark:
        "results/logs/generate/{model}/{variant}/{benchmark}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: vllm_threads
    resources:
        gpu=vllm_gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    params:
        spec=generation_spec,
    shell:
        on_leased_gpus("generate", "model", "variant", "benchmark")
        + "python -m pipeline.stages.generate --model {input.model} --benchmark {input.benchmark} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"
