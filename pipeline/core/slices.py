"""The per-rule config slices and the queries the rules share.

Every rule receives only its own slice of the config, in canonical JSON, as a Snakemake
param: a changed setting reruns exactly the jobs that read it. All slicing lives here so the
Snakefile and the tests agree on what each job depends on.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.benchmark_defs import resolve_definition
from pipeline.core.specs import canonical_json, spec_hash

UNSTRUCTURED = ("magnitude", "wanda", "sparsegpt")
STRUCTURED = ("shortgpt", "reverse")
# methods whose masks (or allocations) need calibration activations
NEEDS_CALIBRATION = ("wanda", "sparsegpt", "shortgpt")


# --------------------------------------------------------------------------- queries


def variant_calibration(config: dict, variant: str) -> str | None:
    """The calibration set a variant reads, or None when its masks need no data."""
    spec = config["variants"][variant]
    method = spec["method"]
    needs = method in NEEDS_CALIBRATION or spec.get("allocation") in ("owl",)
    if spec.get("allocation") == "layerif" and not spec.get("layerif", {}).get("scores"):
        needs = True
    return spec.get("calibration") if needs else None


def variant_stats(config: dict, variant: str) -> list[tuple[str, str | None]]:
    """(kind, calibration) of the per-model statistics a variant reads (pipeline.prune.stats): computed
    once per model and shared by every variant that needs them."""
    spec = config["variants"][variant]
    calibration = spec.get("calibration")
    allocation = spec.get("allocation")
    if spec["method"] == "shortgpt":
        return [("block_influence", calibration)]
    if allocation == "owl":
        return [("activations", calibration)]
    if allocation == "alphapruning":
        return [("alphas", None)]
    if allocation == "layerif" and not spec.get("layerif", {}).get("scores"):
        return [("layerif", calibration)]
    return []


def stats_path(model: str, kind: str, calibration: str | None) -> str:
    return f"results/stats/{model}/{kind}" + (f"-{calibration}" if calibration else "") + ".parquet"


def is_dense(config: dict, variant: str) -> bool:
    return config["variants"][variant]["method"] == "dense"


def budgets(config: dict) -> list[int]:
    return sorted(config["generation"]["budgets"])


def wait_settings(times: int | list[int]) -> list[int]:
    """generation.wait.times as the sorted list of Wait settings: an integer is one setting.
    `prepare` stores this form, so the rest of the code sees a list."""
    return [times] if isinstance(times, int) else sorted(times)


# --------------------------------------------------------------------------- slices


def model_source(config: dict, model: str) -> dict:
    """What identifies the base model's weights (not how it is prompted); a trained demo model
    is identified by its task too."""
    spec = config["models"][model]
    keys = ("hub", "revision") if "hub" in spec else ("path",) if "path" in spec else ("gguf",) if "gguf" in spec else ("demo",)
    source = {"name": model, **{k: spec[k] for k in keys}}
    if is_trained_demo(config, model):
        source["task"] = config["demo_task"]
    return source


def is_trained_demo(config: dict, model: str) -> bool:
    return "train" in config["models"][model].get("demo", {})


SHIPPED_RECORD = "training.json"  # in a trained model's folder: the settings it was made with


def training_settings(source: dict) -> dict:
    """What a trained demo model is made from (model_source() of it): its shape, its training
    and its task; not where a shipped copy lies."""
    return {"demo": {k: v for k, v in source["demo"].items() if k != "shipped"}, "task": source["task"]}


def shipped_model(source: dict) -> Path | None:
    """The shipped folder of a trained demo model (models.*.demo.shipped) when its training record
    holds the current settings; None when the model is to be trained (rule train_demo)."""
    folder = source.get("demo", {}).get("shipped")
    if folder is None or "task" not in source:
        return None
    try:
        record = json.loads((Path(folder) / SHIPPED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no record: train (the config check names a missing folder)
    return Path(folder) if record.get("settings_hash") == spec_hash(training_settings(source)) else None


def uses_shipped_model(config: dict, model: str) -> bool:
    return is_trained_demo(config, model) and shipped_model(model_source(config, model)) is not None


def trains_demo(config: dict, model: str) -> bool:
    """Rule train_demo runs for this model: it trains and no shipped copy has its settings."""
    return is_trained_demo(config, model) and not uses_shipped_model(config, model)


def calibration_slice(config: dict, model: str, calibration: str) -> dict:
    spec = config["calibration"][calibration]
    slice_ = {"model": model_source(config, model), "calibration": spec}
    if spec["source"] == "demo_task":
        slice_["task"] = config["demo_task"]
    return slice_


def pruning_device(config: dict, model: str) -> str:
    """Where the statistics, masks and perplexity of `model` compute: the CPU for a model with
    device: cpu, else pruning.device."""
    return "cpu" if config["models"][model].get("device") == "cpu" else config["pruning"]["device"]


def mask_slice(config: dict, model: str, variant: str) -> dict:
    spec = dict(config["variants"][variant])
    spec.pop("calibration", None)  # captured by the calibration input file itself
    return {
        "model": model_source(config, model),
        "dtype": config["models"][model]["dtype"],
        "variant": variant,
        "prune": spec,
        "device": pruning_device(config, model),
    }


def stats_slice(config: dict, model: str, kind: str) -> dict:
    return {"model": model_source(config, model), "dtype": config["models"][model]["dtype"],
            "kind": kind, "device": pruning_device(config, model)}


def perplexity_slice(config: dict, model: str, variant: str) -> dict:
    task = {"task": config["demo_task"]} if config["perplexity"]["text"] == "demo_task" else {}
    return {"model": model_source(config, model), "variant": variant, "dtype": config["models"][model]["dtype"],
            "device": pruning_device(config, model), **config["perplexity"], **task}


def export_slice(config: dict, model: str, variant: str) -> dict:
    return {"model": model_source(config, model), "dtype": config["models"][model]["dtype"], "variant": variant}


def generation_slice(config: dict, model: str, variant: str, benchmark: str) -> dict:
    model_spec = config["models"][model]
    return {
        "model": model,
        "variant": variant,
        "benchmark": benchmark,
        "template": model_spec["template"],
        "delimiters": model_spec.get("delimiters", {}),
        "dtype": model_spec["dtype"],
        "sampling": model_spec["sampling"],
        "generation": config["generation"],
    }


def benchmark_slice(config: dict, benchmark: str) -> dict:
    definition = resolve_definition(benchmark, config["benchmarks"][benchmark])
    if "demo_task" in definition:
        definition["demo_task"] = {**definition["demo_task"], "task": config["demo_task"]}
    return {"benchmark": benchmark, "definition": definition}


def grading_slice(config: dict, benchmark: str) -> dict:
    return {"benchmark": benchmark, "grader": benchmark_slice(config, benchmark)["definition"]["grader"], **config["grading"]}


def training_seeds(config: dict) -> dict[str, dict]:
    """Trained demo models -> {family, seed}: models whose settings differ only in their seeds
    (the initial weights' and the training's, models.*.demo.seed and .train.seed) form a family,
    named by its first model; the tables show the spread across it. `seed` is the training's."""
    out, families = {}, {}
    for name in config["models"]:
        if is_trained_demo(config, name):
            settings = training_settings(model_source(config, name))
            seed = settings["demo"]["train"]["seed"]
            key = canonical_json({**settings, "demo": {**settings["demo"], "seed": None, "train": {
                **settings["demo"]["train"], "seed": None}}})
            out[name] = {"family": families.setdefault(key, name), "seed": seed}
    return out


def table_slice(config: dict) -> dict:
    return {
        "training": training_seeds(config),
        # blocks per model where the config says it (demo models): structured pruning's sparsity
        "depths": {name: spec["demo"]["layers"] for name, spec in config["models"].items() if "demo" in spec},
        "models": list(config["models"]),
        "variants": {name: config["variants"][name] for name in config["variants"]},
        "benchmarks": list(config["benchmarks"]),
        "budgets": budgets(config),
        "wait_times": config["generation"]["wait"]["times"],
        "seeds": config["generation"]["seeds"],
        "samples": config["generation"]["samples"],
        **config["tables"],
    }
