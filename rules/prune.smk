# Stages 2-3: masks (or removed blocks) and pruned checkpoints.


rule stats_weights:
    """AlphaPruning's heavy-tail exponent of every matrix: once per model, for all variants."""
    input:
        model=manifest_of,
    output:
        "results/stats/{model}/alphas.parquet",
    params:
        spec=stats_spec,
    resources:
        mem_mb=gpu_mem_mb,
    log:
        "results/logs/stats/{model}/alphas.log",
    benchmark:
        "results/logs/stats/{model}/alphas.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    shell:
        "python -m pipeline.stats --kind alphas --model {input.model} --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule stats_activations:
    """Statistics of the dense model on calibration data (OWL outliers, ShortGPT block influence,
    LayerIF influence): once per model and calibration set, for all variants."""
    input:
        unpack(stats_inputs),
    output:
        "results/stats/{model}/{kind}-{calibration}.parquet",
    params:
        spec=stats_spec,
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    log:
        "results/logs/stats/{model}/{kind}-{calibration}.log",
    benchmark:
        "results/logs/stats/{model}/{kind}-{calibration}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    shell:
        "python -m pipeline.stats --kind {wildcards.kind} --model {input.model} --calibration {input.calibration} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule masks:
    """Compute a variant's masks block by block (unstructured) or choose blocks to remove."""
    input:
        unpack(mask_inputs),
    output:
        "results/masks/{model}/{variant}.parquet",
    params:
        spec=mask_spec,
        calibration=calibration_flag,
        stats=stats_flag,
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    log:
        "results/logs/masks/{model}/{variant}.log",
    benchmark:
        "results/logs/masks/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    shell:
        "python -m pipeline.masks --model {input.model} {params.calibration} {params.stats} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule export:
    """Write the pruned checkpoint (safetensors, config, tokenizer) that vLLM loads."""
    input:
        model=manifest_of,
        masks="results/masks/{model}/{variant}.parquet",
    output:
        directory("results/checkpoints/{model}/{variant}") if CHECKPOINT_KEEP else temp(directory("results/checkpoints/{model}/{variant}")),
    params:
        spec=export_spec,
    resources:
        mem_mb=gpu_mem_mb,
    log:
        "results/logs/export/{model}/{variant}.log",
    benchmark:
        "results/logs/export/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m pipeline.export --model {input.model} --masks {input.masks} "
        "--spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule perplexity:
    """Perplexity of a variant on the held-out text, in non-overlapping windows."""
    input:
        model=weights_for_generation,
        text=perplexity_text,
    output:
        "results/perplexity/{model}/{variant}.parquet",
    params:
        spec=perplexity_spec,
        text=config["perplexity"]["text"],
    threads: 2
    resources:
        gpu=gpus,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime_min,
    log:
        "results/logs/perplexity/{model}/{variant}.log",
    benchmark:
        "results/logs/perplexity/{model}/{variant}.benchmark.tsv"
    conda:
        "../envs/gpu.yaml"
    shell:
        "python -m pipeline.perplexity --model {input.model} --text {params.text:q} --spec {params.spec:q} "
        "--out {output} > {log:q} 2>&1"
