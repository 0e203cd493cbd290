# Stage 1: base models, benchmarks and calibration data.


rule train_demo:
    """Train a demo model from scratch on the synthetic task (models.<model>.demo.train)."""
    output:
        model=directory("results/models/{model}/trained"),
        plots=training_plots("{model}"),
    log:
        "results/logs/train_demo/{model}.log",
    benchmark:
        "results/logs/train_demo/{model}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: 2
    params:
        spec=model_spec,
    shell:
        "python -m pipeline.stages.train_demo --spec {params.spec:q} --threads {threads} "
        "--out {output.model} --plot results/plots/training_loss-{wildcards.model} > {log:q} 2>&1"


rule convert_gguf:
    """Dequantize a model's GGUF file once into a float32 safetensors checkpoint with its tokenizer."""
    input:
        gguf_file,
    output:
        directory("results/models/{model}/converted"),
    log:
        "results/logs/convert_gguf/{model}.log",
    benchmark:
        "results/logs/convert_gguf/{model}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=model_spec,
    shell:
        "python -m pipeline.stages.convert_gguf --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule base_model:
    """Resolve a base model once: download from the Hub, check a local folder, point at a converted GGUF, build or train the demo."""
    input:
        trained_model,
        converted_model,
    output:
        "results/models/{model}/model.json",
    log:
        "results/logs/base_model/{model}.log",
    benchmark:
        "results/logs/base_model/{model}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=model_spec,
    shell:
        "python -m pipeline.stages.base_model --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule benchmark_data:
    """Load a benchmark into the normalised table (id, problem, answer, choices)."""
    output:
        "results/data/{benchmark}.parquet",
    log:
        "results/logs/benchmark_data/{benchmark}.log",
    benchmark:
        "results/logs/benchmark_data/{benchmark}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=benchmark_spec,
    shell:
        "python -m pipeline.stages.benchmark_data --spec {params.spec:q} --out {output} > {log:q} 2>&1"


rule calibration:
    """Sample calibration sequences with the model's tokenizer, once per (model, calibration)."""
    input:
        model=manifest_of,
    output:
        "results/calibration/{model}/{calibration}.parquet",
    log:
        "results/logs/calibration/{model}/{calibration}.log",
    benchmark:
        "results/logs/calibration/{model}/{calibration}.benchmark.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        spec=calibration_spec,
    shell:
        "python -m pipeline.stages.calibration --model {input.model} --spec {params.spec:q} "
        "--out {output} > {log:q} 2>&1"
