# Stages 2-3: masks (or removed blocks) and pruned checkpoints.


rule masks:
    """Compute a variant's masks block by block (unstructured) or choose blocks to remove."""
    input:
        unpack(mask_inputs),
    output:
        "results/masks/{model}/{variant}.parquet",
    params:
        spec=mask_spec,
        calibration=calibration_flag,
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
        "python -m pipeline.masks --model {input.model} {params.calibration} "
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
