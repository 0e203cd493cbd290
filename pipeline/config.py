"""Load, validate and slice the workflow configuration.

Every rule receives only its own slice of the config, in canonical JSON, as a Snakemake
param: a changed setting reruns exactly the jobs that read it. All slicing lives here so the
Snakefile and the tests agree on what each job depends on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from pipeline.benchmark_defs import BUILTIN, resolve_definition
from pipeline.specs import canonical_json, spec_hash  # noqa: F401 - part of this module's interface

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"

UNSTRUCTURED = ("magnitude", "wanda", "sparsegpt")
STRUCTURED = ("shortgpt", "reverse")
# methods whose masks (or allocations) need calibration activations
NEEDS_CALIBRATION = ("wanda", "sparsegpt", "shortgpt")


class ConfigError(ValueError):
    """A configuration problem, worded for the user: the key, what is wrong, the fix."""


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} of "
                f"{key_node.start_mark.name}: each model, variant, benchmark and setting "
                "may appear once; rename or remove one of them"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pass an existing file with --configfile")
    with open(path) as handle:
        data = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - safe loader subclass
    return data or {}


def load(path: str | Path) -> dict:
    """Read, validate and fill defaults of a config file."""
    return prepare(load_yaml(path))


def schema() -> dict:
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


# --------------------------------------------------------------------------- validation


def _fill_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _range(schema: dict) -> str:
    low = f"({schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else f"[{schema['minimum']}" if "minimum" in schema else "(-inf"
    high = f"{schema['exclusiveMaximum']})" if "exclusiveMaximum" in schema else f"{schema['maximum']}]" if "maximum" in schema else "inf)"
    kind = "an integer" if schema.get("type") == "integer" else "a number"
    return f"{kind} in {low}, {high}"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under {key}" if error.absolute_path else "at the top level"
        return f"unknown key {', '.join(map(repr, extra))} {where}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not allowed; choose one of: {', '.join(map(str, error.validator_value))}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    if error.validator in ("exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum"):
        return f"{key}: {error.message}; allowed: {_range(schema)}"
    return f"{key}: {error.message}"


def prepare(config: dict) -> dict:
    """Validate `config` against config/schema.yaml and the rules a schema cannot state,
    fill in defaults, and return a new dict. Raises ConfigError naming every problem."""
    config = copy.deepcopy(config)
    validator = _Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(_describe(e) for e in errors))
    _fill_variant_defaults(config)
    problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _fill_variant_defaults(config: dict) -> None:
    pruning = config["pruning"]
    for spec in config["variants"].values():
        method = spec["method"]
        if method in UNSTRUCTURED:
            spec.setdefault("allocation", "uniform")
            spec.setdefault("calibration", pruning["calibration"])
        elif method == "shortgpt":
            spec.setdefault("calibration", pruning["structured_calibration"])
        for option in ("owl", "alphapruning", "layerif"):
            if spec.get("allocation") == option:
                spec.setdefault(option, {})
                sub = schema()["properties"]["variants"]["additionalProperties"]["properties"][option]
                for name, prop in sub["properties"].items():
                    if "default" in prop:
                        spec[option].setdefault(name, prop["default"])


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    for name, model in config["models"].items():
        sources = [s for s in ("hub", "path", "demo") if s in model]
        if len(sources) != 1:
            problems.append(
                f"models.{name}: give exactly one of hub (a Hub id), path (a local directory) "
                f"or demo (a tiny offline model); found {sources or 'none'}"
            )
        if model["template"] == "generic":
            needed = {"think_start", "think_end", "answer_start", "forced_answer"}
            missing = sorted(needed - set(model.get("delimiters", {})))
            if missing:
                problems.append(f"models.{name}.delimiters: template generic needs {', '.join(missing)}")
        if "demo" in model:
            demo = model["demo"]
            if demo["hidden"] % demo["heads"] or demo["heads"] % demo["kv_heads"]:
                problems.append(f"models.{name}.demo: hidden must divide by heads and heads by kv_heads")
            elif demo["hidden"] // demo["heads"] < 32:
                problems.append(
                    f"models.{name}.demo: head size hidden/heads = {demo['hidden'] // demo['heads']} "
                    "is below 32, which vLLM's CPU attention rejects; raise hidden or lower heads"
                )
    for name, spec in config["variants"].items():
        key = f"variants.{name}"
        method = spec["method"]
        if method in UNSTRUCTURED:
            if "sparsity" not in spec and "nm" not in spec:
                problems.append(f"{key}: method {method} needs sparsity (a fraction in (0, 1)) or nm (e.g. '2:4')")
            if "layers" in spec:
                problems.append(f"{key}: layers is for shortgpt and reverse; {method} takes sparsity")
            if "nm" in spec:
                n, m = map(int, spec["nm"].split(":"))
                if n >= m:
                    problems.append(f"{key}.nm: N must be below M in N:M, got {spec['nm']}")
                if spec.get("allocation", "uniform") != "uniform":
                    problems.append(f"{key}: nm patterns fix the sparsity at N/M; use allocation uniform")
                if "sparsity" in spec and abs(spec["sparsity"] - n / m) > 1e-9:
                    problems.append(f"{key}: sparsity {spec['sparsity']} contradicts nm {spec['nm']}; drop sparsity")
        else:
            for option in ("sparsity", "allocation", "nm"):
                if option in spec:
                    problems.append(f"{key}.{option}: not used by method {method}; remove it")
            if method in STRUCTURED and "layers" not in spec:
                problems.append(f"{key}: method {method} needs layers (how many blocks to remove)")
            if method == "dense" and "layers" in spec:
                problems.append(f"{key}.layers: not used by method dense; remove it")
        for option in ("owl", "alphapruning", "layerif"):
            if option in spec and spec.get("allocation") != option:
                problems.append(f"{key}.{option}: settings for allocation {option}, but allocation is {spec.get('allocation')}")
        calibration = variant_calibration(config, name)
        if calibration is not None and calibration not in config["calibration"]:
            problems.append(
                f"{key}: calibration {calibration!r} is not defined; add it under calibration "
                f"(defined: {', '.join(config['calibration']) or 'none'})"
            )
        if method == "reverse" or method == "shortgpt":
            for model_name, model in config["models"].items():
                if "demo" in model and spec.get("layers", 0) >= model["demo"]["layers"]:
                    problems.append(f"{key}.layers: removes {spec['layers']} of {model_name}'s {model['demo']['layers']} blocks")
    for name, calibration in config["calibration"].items():
        if calibration["source"] == "file" and "path" not in calibration:
            problems.append(f"calibration.{name}: source file needs path (a local text file)")
    for name, bench in config["benchmarks"].items():
        if name not in BUILTIN and "file" not in bench and "hub" not in bench:
            problems.append(
                f"benchmarks.{name}: not a built-in benchmark ({', '.join(BUILTIN)}); "
                "give file (a local JSONL/CSV/Parquet) or hub, and grader"
            )
        if name not in BUILTIN and "grader" not in bench:
            problems.append(f"benchmarks.{name}: custom benchmarks need grader (integer, number, math or choice)")
    if config["generation"]["wait"]["times"] and not config["generation"]["wait"]["string"].strip():
        problems.append("generation.wait.string: must not be empty when generation.wait.times > 0")
    return problems


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
    """(kind, calibration) of the per-model statistics a variant reads (pipeline.stats): computed
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


# --------------------------------------------------------------------------- slices


def model_source(config: dict, model: str) -> dict:
    """What identifies the base model's weights (not how it is prompted)."""
    spec = config["models"][model]
    keys = ("hub", "revision") if "hub" in spec else ("path",) if "path" in spec else ("demo",)
    return {"name": model, **{k: spec[k] for k in keys}}


def calibration_slice(config: dict, model: str, calibration: str) -> dict:
    return {"model": model_source(config, model), "calibration": config["calibration"][calibration]}


def mask_slice(config: dict, model: str, variant: str) -> dict:
    spec = dict(config["variants"][variant])
    spec.pop("calibration", None)  # captured by the calibration input file itself
    return {
        "model": model_source(config, model),
        "dtype": config["models"][model]["dtype"],
        "variant": variant,
        "prune": spec,
        "device": config["pruning"]["device"],
    }


def stats_slice(config: dict, model: str, kind: str) -> dict:
    return {"model": model_source(config, model), "dtype": config["models"][model]["dtype"],
            "kind": kind, "device": config["pruning"]["device"]}


def perplexity_slice(config: dict, model: str, variant: str) -> dict:
    return {"model": model_source(config, model), "variant": variant, "dtype": config["models"][model]["dtype"],
            "device": config["pruning"]["device"], **config["perplexity"]}


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
    return {"benchmark": benchmark, "definition": resolve_definition(benchmark, config["benchmarks"][benchmark])}


def grading_slice(config: dict, benchmark: str) -> dict:
    return {"benchmark": benchmark, "grader": benchmark_slice(config, benchmark)["definition"]["grader"], **config["grading"]}


def table_slice(config: dict) -> dict:
    return {
        "models": list(config["models"]),
        "variants": {name: config["variants"][name] for name in config["variants"]},
        "benchmarks": list(config["benchmarks"]),
        "budgets": budgets(config),
        "seeds": config["generation"]["seeds"],
        "samples": config["generation"]["samples"],
        **config["tables"],
    }
