# Helpers shared by the rules: config slices as params, input functions, wildcard constraints.
# Each rule gets the canonical JSON of exactly the config it reads, so a changed setting
# reruns exactly the jobs that read it (Snakemake's params trigger).

import os
import re

from pipeline.core import slices, specs
from pipeline.core import gpus as gpu_devices
from pipeline.core.environment import put_interpreter_first
from pipeline.reporting import tables


def _alternatives(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=_alternatives(config["models"]),
    variant=_alternatives(config["variants"]),
    benchmark=_alternatives(config["benchmarks"]),
    calibration=_alternatives(config["calibration"]) or "(?!)",
    kind="activations|block_influence|layerif",


# Stages run as `python -m pipeline.stages.<stage>`: the interpreter that runs Snakemake comes first
# on PATH (a venv needs no activation); under --sdm conda the rule's environment comes first.
put_interpreter_first()
CHECKPOINT_KEEP = config["pruning"]["keep_checkpoints"]


# --------------------------------------------------------------------------- paths


def trained_model(wildcards):
    """A demo model with `train` is trained by its own rule, unless its shipped copy was made
    at the current settings (models.*.demo.shipped); the manifest points at either one.
    """
    if slices.trains_demo(config, wildcards.model):
        return f"results/models/{wildcards.model}/trained"
    shipped = slices.shipped_model(slices.model_source(config, wildcards.model))
    return [str(shipped / "model.safetensors")] if shipped else []


def converted_model(wildcards):
    """A model given as a GGUF file is converted by rule convert_gguf; the manifest points there."""
    if "gguf" in config["models"][wildcards.model]:
        return f"results/models/{wildcards.model}/converted"
    return []


def gguf_file(wildcards):
    """The GGUF file of a model (models.<model>.gguf: a path, or a file inside a package), when it
    exists: a missing one is the preflight's to name, with its key."""
    from pipeline.models import gguf

    try:
        path = gguf.locate(config["models"][wildcards.model]["gguf"])
    except gguf.GGUFError:
        return []
    return [str(path)] if path.is_file() else []


def manifest_path(model):
    return f"results/models/{model}/model.json"


def checkpoint_path(model, variant):
    return f"results/checkpoints/{model}/{variant}"


def generations_path(model, variant, benchmark):
    return f"results/generations/{model}/{variant}/{benchmark}.parquet"


def grades_path(model, variant, benchmark):
    return f"results/grades/{model}/{variant}/{benchmark}.parquet"


def all_grades():
    return [
        grades_path(model, variant, benchmark)
        for model in config["models"]
        for variant in config["variants"]
        for benchmark in config["benchmarks"]
    ]


# a line that starts with `report` is parsed as the report directive, so call it by another name
report_output = report
# captions by absolute path: a relative one would resolve against whichever file calls these
CAPTIONS = os.path.join(workflow.basedir, "report")


def pivot_outputs(suffix):
    """The pivots pipeline.reporting.tables writes: per model and budget, and per Wait setting when there are several."""
    index = {"csv": 0, "md": 1}[suffix]
    return [
        report_output(
            str(tables.pivot_paths("results/tables", model, budget, wait)[index]),
            caption=os.path.join(CAPTIONS, "pivot.rst"),
            category="Tables",
            subcategory=model,
            labels={"model": model, "budget": str(budget)}
            | ({} if wait is None else {"Wait": str(wait)}),
        )
        for model, budget, wait in tables.pivot_keys(slices.table_slice(config))
    ]


def equal_compute_outputs():
    """Per model, pruned against dense at equal compute (pipeline.reporting.equal_compute)."""
    return [
        report_output(
            f"results/tables/equal-compute-{model}.{suffix}",
            caption=os.path.join(CAPTIONS, "equal_compute.rst"),
            # its own category: report labels are columns, and the pivots' are model and budget
            category="Equal compute",
            subcategory=model,
            labels={"model": model, "table": f"equal compute ({suffix})"},
        )
        for model in config["models"]
        for suffix in ("csv", "md")
    ]


def claims_outputs(suffix):
    """Per model, the study's comparisons tested across the grid (pipeline.reporting.claims)."""
    return [
        report_output(
            f"results/tables/claims-{model}.{suffix}",
            caption=os.path.join(CAPTIONS, "claims.rst"),
            category="Claims",
            subcategory=model,
            labels={"model": model, "table": f"claims ({suffix})"},
        )
        for model in config["models"]
    ]


def forest_outputs(fmt):
    """Per model and benchmark (and pooled), the forest plot of its claims."""
    return [
        report_output(
            str(path),
            caption=os.path.join(CAPTIONS, "forest.rst"),
            category="Claims",
            subcategory=model,
            labels={"model": model, "figure": f"{path.stem} ({fmt})"},
        )
        for model in config["models"]
        for path in tables.forest_paths(
            "results/plots", model, list(config["benchmarks"])
        )
        if path.suffix == f".{fmt}"
    ]


def plot_outputs(kind, fmt):
    return [
        report_output(
            f"results/plots/{kind}-{model}.{fmt}",
            caption=os.path.join(CAPTIONS, f"{kind}.rst"),
            category="Figures",
            subcategory=model,
            labels={"model": model, "figure": f"{kind} ({fmt})"},
        )
        for model in config["models"]
    ]


def gpu_timeline_outputs():
    return [
        report_output(
            f"results/plots/gpu_timeline.{fmt}",
            caption=os.path.join(CAPTIONS, "gpu_timeline.rst"),
            category="Figures",
            subcategory="GPUs",
            labels={"figure": f"GPU leases ({fmt})"},
        )
        for fmt in ("png", "svg")
    ]


def seed_plot_outputs():
    """Per family of trained demo models with several training seeds, their spread."""
    return [
        report_output(
            f"results/plots/training_seeds-{family}.{fmt}",
            caption=os.path.join(CAPTIONS, "training_seeds.rst"),
            category="Figures",
            subcategory=family,
            labels={"model": family, "figure": f"training_seeds ({fmt})"},
        )
        for family in tables.seed_families(slices.training_seeds(config))
        for fmt in ("png", "svg")
    ]


def training_plots(model):
    return [
        report_output(
            f"results/plots/training_loss-{model}.{fmt}",
            caption=os.path.join(CAPTIONS, "training_loss.rst"),
            category="Figures",
            subcategory=model,
            labels={"model": model, "figure": f"training_loss ({fmt})"},
        )
        for fmt in ("png", "svg")
    ]


def final_targets():
    """The table, its pivots and the plots (the training curves of trained demo models, the
    judge's disagreements when it is on)."""
    targets = (
        ["results/tables/main.csv"]
        + pivot_outputs("csv")
        + pivot_outputs("md")
        + equal_compute_outputs()
        + claims_outputs("csv")
        + claims_outputs("md")
        + [f"results/tables/{name}" for name in tables.SEED_SPREAD]
    )
    if judging():
        targets.append("results/tables/judge_disagreements.csv")
    for kind in ("accuracy_vs_budget", "accuracy_vs_sparsity", "accuracy_vs_compute"):
        targets += plot_outputs(kind, "png") + plot_outputs(kind, "svg")
    targets += forest_outputs("png") + forest_outputs("svg")
    targets += gpu_timeline_outputs() + seed_plot_outputs()
    for model in config["models"]:
        if slices.trains_demo(config, model):
            targets += [
                f"results/plots/training_loss-{model}.{fmt}" for fmt in ("png", "svg")
            ]
    return targets


# --------------------------------------------------------------------------- input functions


def manifest_of(wildcards):
    return manifest_path(wildcards.model)


def weights_for_generation(wildcards):
    """Dense variants generate from the base model; the others from their pruned checkpoint."""
    if slices.is_dense(config, wildcards.variant):
        return manifest_path(wildcards.model)
    return checkpoint_path(wildcards.model, wildcards.variant)


def mask_inputs(wildcards):
    inputs = {"model": manifest_path(wildcards.model)}
    calibration = slices.variant_calibration(config, wildcards.variant)
    if calibration is not None:
        inputs["calibration"] = (
            f"results/calibration/{wildcards.model}/{calibration}.parquet"
        )
    inputs["stats"] = [
        slices.stats_path(wildcards.model, kind, cal)
        for kind, cal in slices.variant_stats(config, wildcards.variant)
    ]
    if config["variants"][wildcards.variant].get("allocation") == "alphapruning":
        # known from the alphas alone: computed and checked by its own job, before this one
        inputs["allocation"] = (
            f"results/allocation/{wildcards.model}/{wildcards.variant}.parquet"
        )
    scores = config["variants"][wildcards.variant].get("layerif", {}).get("scores")
    if scores and os.path.isfile(scores):  # a missing file: the preflight names its key
        inputs["layerif_scores"] = scores
    return inputs


def stats_inputs(wildcards):
    inputs = {"model": manifest_path(wildcards.model)}
    if "calibration" in wildcards.keys():
        inputs["calibration"] = (
            f"results/calibration/{wildcards.model}/{wildcards.calibration}.parquet"
        )
    return inputs


def perplexity_text(wildcards):
    """A local held-out text is an input (its changes rerun the job); wikitext2 comes from the Hub."""
    text = config["perplexity"]["text"]
    # wikitext2, or a missing file that the preflight names with its key
    return [text] if text != "wikitext2" and os.path.isfile(text) else []


def all_perplexities():
    if not config["perplexity"]["enabled"]:
        return []
    return [
        f"results/perplexity/{model}/{variant}.parquet"
        for model in config["models"]
        for variant in config["variants"]
    ]


# --------------------------------------------------------------------------- params (config slices)


def _json(obj):
    return specs.canonical_json(obj)


def model_spec(wildcards):
    return _json(slices.model_source(config, wildcards.model))


def calibration_spec(wildcards):
    return _json(
        slices.calibration_slice(config, wildcards.model, wildcards.calibration)
    )


def mask_spec(wildcards):
    return _json(slices.mask_slice(config, wildcards.model, wildcards.variant))


def stats_spec(wildcards):
    kind = wildcards.kind if "kind" in wildcards.keys() else "alphas"
    return _json(slices.stats_slice(config, wildcards.model, kind))


def perplexity_spec(wildcards):
    return _json(slices.perplexity_slice(config, wildcards.model, wildcards.variant))


def export_spec(wildcards):
    return _json(slices.export_slice(config, wildcards.model, wildcards.variant))


def benchmark_spec(wildcards):
    return _json(slices.benchmark_slice(config, wildcards.benchmark))


def generation_spec(wildcards):
    return _json(
        slices.generation_slice(
            config, wildcards.model, wildcards.variant, wildcards.benchmark
        )
    )


def grading_spec(wildcards):
    # the judge reads its own slice: its settings never regrade
    spec = slices.grading_slice(config, wildcards.benchmark)
    return _json({key: value for key, value in spec.items() if key != "judge"})


def judging():
    return config["grading"]["judge"]["enabled"]


def judge_spec(wildcards):
    return _json(
        {"benchmark": wildcards.benchmark, "judge": config["grading"]["judge"]}
    )


def all_judgements():
    return (
        [
            path.replace("results/grades/", "results/judgements/", 1)
            for path in all_grades()
        ]
        if judging()
        else []
    )


def judgements_flag(wildcards, input):
    return ("--judgements " + " ".join(input.judgements)) if judging() else ""


def table_spec(wildcards):
    return _json(slices.table_slice(config))


# --------------------------------------------------------------------------- resources


def model_size_b(wildcards):
    model = config["models"][wildcards.model]
    return 0.01 if "demo" in model else model["size_b"]


def block_gpus(wildcards):
    """Pruning and statistics hold one block at a time: one GPU (none for pruning.device: cpu,
    or for a demo model, which runs on the CPU)."""
    return gpu_devices.job_devices(config, "masks", wildcards.model)


def vllm_gpus(wildcards):
    """Generation and perplexity hold the whole model: as many GPUs as vLLM's tensor
    parallel size, which Slurm gives the job (--gpus) and a local run leases to it."""
    return gpu_devices.job_devices(config, "generate", wildcards.model)


def block_threads(wildcards):
    return gpu_devices.job_threads(config, "masks", wildcards.model)


def vllm_threads(wildcards):
    return gpu_devices.job_threads(config, "generate", wildcards.model)


def on_leased_gpus(rule, *names):
    """The start of a GPU rule's command: the job leases its `gpu` resource's worth of
    devices and runs in CUDA_VISIBLE_DEVICES set to them (pipeline.core.gpus)."""
    wildcards = " ".join(f"{name}={{wildcards.{name}}}" for name in names)
    return (
        "python -m pipeline.core.gpus run --devices {resources.gpu} "
        f"--rule {rule} --wildcards {wildcards} -- "
    )


def gpu_mem_mb(wildcards):
    # weights in bf16 plus activations, KV cache and the CPU copy of the model
    return int(4000 + 6000 * model_size_b(wildcards))


def gpu_runtime_min(wildcards):
    return int(30 + 30 * model_size_b(wildcards))


def calibration_flag(wildcards, input):
    return f"--calibration {input.calibration}" if "calibration" in input.keys() else ""


def stats_flag(wildcards, input):
    return f"--stats {' '.join(input.stats)}" if input.stats else ""


def perplexity_flag(wildcards, input):
    return f"--perplexity {' '.join(input.perplexity)}" if input.perplexity else ""
