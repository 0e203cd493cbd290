# Stages 2-3: masks (or removed blocks) and pruned checkpoints.


rule stats_weights:
    """AlphaPruning's heavy-tail exponent of every matrix: once per model, for all variants."""
    input:
        model=manifest_of,
    output:
        "results/stats/{model}/alphas.parquet",
    log:
        "results/logs/stats/{model}/alphas.log",
    benchmark:
        "results/logs/stats/{model}/alphas.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    resources:
        mem_mb=gpu_mem_mb,
    params:
        spec=stats_spec,
    shell:
        "python -m pipeline.stages.stats --kind alphas --model {input.model} --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule stats_activations:
    """Statistics of the dense model on calibration data (OWL outliers, ShortGPT block influence,
    LayerIF influence): once per model and calibration set, for all variants."""
    input:
        unpack(stats_inputs),
    output:
        "results/stats/{model}/{kind}-{calibration}.parquet",
    log:
        "results/logs/stats/{model}/{kind}-{calibration}.log",
    benchmark:
        "results/logs/stats/{model}/{kind}-{calibration}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: block_threads
    resources:
        gpu=block_gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    params:
        spec=stats_spec,
    shell:
        on_leased_gpus("stats_activations", "model", "kind", "calibration")
        + "python -m pipeline.stages.stats --kind {wildcards.kind} --model {input.model} --calibration {input.calibration} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule allocation:
    """AlphaPruning's per-block sparsities from the alphas, refused outside [0, 1) before any masks job."""
    input:
        "results/stats/{model}/alphas.parquet",
    output:
        "results/allocation/{model}/{variant}.parquet",
    log:
        "results/logs/allocation/{model}/{variant}.log",
    benchmark:
        "results/logs/allocation/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=mask_spec,
    shell:
        "python -m pipeline.stages.allocation --alphas {input} --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule masks:
    """Compute a variant's masks block by block (unstructured) or choose blocks to remove."""
    input:
        unpack(mask_inputs),
    output:
        "results/masks/{model}/{variant}.parquet",
    log:
        "results/logs/masks/{model}/{variant}.log",
    benchmark:
        "results/logs/masks/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: block_threads
    resources:
        gpu=block_gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    params:
        spec=mask_spec,
        calibration=calibration_flag,
        stats=stats_flag,
    shell:
        on_leased_gpus("masks", "model", "variant")
        + "python -m pipeline.stages.masks --model {input.model} {params.calibration} {params.stats} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule export:
    """Write the pruned checkpoint (safetensors, config, tokenizer) that vLLM loads."""
    input:
        model=manifest_of,
        masks="results/masks/{model}/{variant}.parquet",
    output:
        directory("results/checkpoints/{model}/{variant}")
        if CHECKPOINT_KEEP
        else temp(directory("results/checkpoints/{model}/{variant}")),
    log:
        "results/logs/export/{model}/{variant}.log",
    benchmark:
        "results/logs/export/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=gpu_mem_mb,
    params:
        spec=export_spec,
    shell:
        "python -m pipeline.stages.export --model {input.model} --masks {input.masks} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule perplexity:
    """Perplexity of a variant on the held-out text, in non-overlapping windows."""
    input:
        model=weights_for_generation,
        text=perplexity_text,
    output:
        "results/perplexity/{model}/{variant}.parquet",
    log:
        "results/logs/perplexity/{model}/{variant}.log",
    benchmark:
        "results/logs/perplexity/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: vllm_threads
    resources:
        gpu=vllm_gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    params:
        spec=perplexity_spec,
        text=config["perplexity"]["text"],
    shell:
        on_leased_gpus("perplexity", "model", "variant")
        + "python -m pipeline.stages.perplexity --model {input.model} --text {params.text:q} --spec {params.spec:q} "
        "--out {output} > {log:q} 2>&1"
