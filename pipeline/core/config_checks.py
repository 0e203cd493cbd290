"""The rules of the configuration that a schema cannot state, and a stage's own check of the
--spec it is given, worded as the schema's refusals are (pipeline.core.config_schema)."""

from __future__ import annotations

import copy
from pathlib import Path

from pipeline.core.benchmark_defs import BUILTIN
from pipeline.core.config_schema import in_words, schema_problems, subschema, suggest
from pipeline.core.slices import STRUCTURED, UNSTRUCTURED, is_trained_demo, variant_calibration


def variant_problems(name: str, spec: dict) -> list[str]:
    """What a schema cannot say about one variant (shared with the masks stage's own check)."""
    problems = []
    key = f"variants.{name}"
    method = spec["method"]
    if method in UNSTRUCTURED:
        if "sparsity" not in spec and "nm" not in spec:
            problems.append(f"{key}: method {method} needs sparsity or nm. Allowed: sparsity, a number between 0 "
                            "and 1 (both excluded), or nm, e.g. \"2:4\". Fix: add one of them")
        if "layers" in spec:
            problems.append(f"{key}.layers: only methods shortgpt and reverse remove blocks. Fix: remove layers "
                            f"(method {method} takes sparsity)")
        if "nm" in spec and isinstance(spec["nm"], str):
            n, m = map(int, spec["nm"].split(":"))
            if n >= m:
                problems.append(f"{key}.nm: {spec['nm']!r} would zero N weights of every M, so N must be below M. "
                                f"Fix: e.g. nm: \"{f'{m}:{n}' if n > m else '2:4'}\"")
            if spec.get("allocation", "uniform") != "uniform":
                problems.append(f"{key}.allocation: an N:M pattern fixes every layer's sparsity at N/M. "
                                "Fix: set allocation: uniform or remove nm")
            if "sparsity" in spec and abs(spec["sparsity"] - n / m) > 1e-9:
                problems.append(f"{key}.sparsity: {spec['sparsity']} contradicts nm {spec['nm']!r} (sparsity N/M). "
                                "Fix: remove sparsity")
    else:
        for option in ("sparsity", "allocation", "nm"):
            if option in spec:
                problems.append(f"{key}.{option}: not used by method {method}. Fix: remove it")
        if method in STRUCTURED and "layers" not in spec:
            problems.append(f"{key}.layers is missing: method {method} needs the number of blocks to remove. "
                            "Allowed: a whole number of at least 1. Fix: add layers")
        if method == "dense" and "layers" in spec:
            problems.append(f"{key}.layers: not used by method dense. Fix: remove it")
    for option in ("owl", "alphapruning", "layerif"):
        if option in spec and spec.get("allocation") != option:
            problems.append(f"{key}.{option}: settings for allocation {option}, but allocation is "
                            f"{spec.get('allocation', 'not set')}. Fix: set allocation: {option} or remove {option}")
    return problems


def depth_problems(config: dict, model: str, depth: int) -> list[str]:
    """Variants that need more blocks than `model` has."""
    problems = []
    for name, spec in config["variants"].items():
        if spec["method"] in STRUCTURED and spec.get("layers", 0) >= depth:
            problems.append(f"variants.{name}.layers: removes {spec['layers']} of model {model}'s {depth} blocks, "
                            f"and the last block always stays. Allowed: at most {depth - 1}. Fix: lower layers")
        elif spec.get("allocation", "uniform") != "uniform" and depth < 2:
            problems.append(f"variants.{name}.allocation: {spec['allocation']} spreads sparsity over blocks, and "
                            f"model {model} has {depth}. Fix: set allocation: uniform")
    return problems


def gguf_source_problems(key: str, source: dict | None) -> list[str]:
    """models.<name>.gguf names its file one way: path, or package and file."""
    if source is None or (set(source) in ({"path"}, {"package", "file"})):
        return []
    return [f"{key}.gguf: has {', '.join(sorted(source)) or 'nothing'}. Allowed: path (a .gguf file), or package "
            "(an installed Python package) and file (the name of the .gguf inside it). Fix: give one of the two"]


def semantic_problems(config: dict) -> list[str]:
    problems = []
    for name, model in config["models"].items():
        key = f"models.{name}"
        sources = [s for s in ("hub", "path", "gguf", "demo") if s in model]
        if len(sources) != 1:
            problems.append(
                f"{key}: found {' and '.join(sources) or 'no source'}. Allowed: exactly one of hub (a Hub id), "
                "path (a local checkpoint folder), gguf (a GGUF file) or demo (a tiny offline model). Fix: keep one"
            )
        problems += gguf_source_problems(key, model.get("gguf"))
        if model["template"] == "generic":
            needed = {"think_start", "think_end", "answer_start", "forced_answer"}
            missing = sorted(needed - set(model.get("delimiters", {})))
            if missing:
                problems.append(f"{key}.delimiters: template generic needs {', '.join(missing)}. "
                                "Fix: add them, or use template s1 or qwen3")
        if "demo" in model:
            demo = model["demo"]
            head_dim = demo.get("head_dim") or demo["hidden"] // demo["heads"]
            if "head_dim" in demo and demo["architecture"] != "qwen3":
                problems.append(f"{key}.demo.head_dim: only the qwen3 architecture sets it. Fix: remove it")
            elif ("head_dim" not in demo and demo["hidden"] % demo["heads"]) or demo["heads"] % demo["kv_heads"]:
                problems.append(f"{key}.demo: hidden must divide by heads and heads by kv_heads. "
                                "Fix: e.g. hidden 64, heads 2, kv_heads 1")
            elif head_dim < 32:
                problems.append(
                    f"{key}.demo: head size {head_dim} is below 32, which vLLM's CPU attention rejects. "
                    "Fix: raise hidden or head_dim, or lower heads"
                )
            problems += depth_problems(config, name, demo["layers"])
            if "shipped" in demo and "train" not in demo:
                problems.append(f"{key}.demo.shipped: only a trained demo model (with train) is shipped. "
                                "Fix: remove shipped, or add train")
            elif "shipped" in demo and not Path(demo["shipped"]).is_dir():
                problems.append(f"{key}.demo.shipped: {demo['shipped']} is not a folder. Fix: point it at a "
                                f"folder that train_demo wrote (results/models/{name}/trained), or remove shipped")
    for name, spec in config["variants"].items():
        problems += variant_problems(name, spec)
        calibration = variant_calibration(config, name)
        if calibration is not None and calibration not in config["calibration"]:
            default = {config["pruning"]["calibration"]: "pruning.calibration",
                       config["pruning"]["structured_calibration"]: "pruning.structured_calibration"}
            by = f" (the default from {default[calibration]})" if calibration in default else ""
            problems.append(
                f"variants.{name}.calibration: {calibration!r}{by} is not defined under calibration"
                f"{suggest(calibration, config['calibration'])}. Allowed: "
                f"{', '.join(config['calibration']) or 'none defined yet'}. Fix: add calibration.{calibration} "
                f"or pick a defined one"
            )
    for i, pair in enumerate(config["tables"]["claims"]["pairs"]):
        for name in pair:
            if name not in config["variants"]:
                problems.append(f"tables.claims.pairs[{i}]: {name!r} is not a variant{suggest(name, config['variants'])}. "
                                f"Allowed: {', '.join(config['variants'])}. Fix: name two defined variants")
        if len(set(pair)) < len(pair):
            problems.append(f"tables.claims.pairs[{i}]: compares {pair[0]!r} with itself. Fix: name two different variants")
    task = config["demo_task"]
    if task["min_terms"] > task["max_terms"]:
        problems.append(f"demo_task.min_terms: {task['min_terms']} exceeds demo_task.max_terms {task['max_terms']}. "
                        "Fix: lower min_terms or raise max_terms")
    for name, model in config["models"].items():
        if config["perplexity"]["enabled"] and config["perplexity"]["text"] == "demo_task" and not is_trained_demo(config, name):
            problems.append(f"perplexity.text: demo_task scores what a trained demo model writes; model {name} is not "
                            "one. Fix: give a text file or wikitext2, or set perplexity.enabled: false")
        if is_trained_demo(config, name) and model["template"] != "qwen3":
            problems.append(f"models.{name}.template: a trained demo model thinks in the Qwen3 format. "
                            "Fix: set template: qwen3")
    for name, calibration in config["calibration"].items():
        if calibration["source"] == "file" and "path" not in calibration:
            problems.append(f"calibration.{name}.path is missing: source file reads a local text file. "
                            f"Fix: add calibration.{name}.path, or use source c4, pg19 or wikitext2")
        if calibration["source"] != "file" and "path" in calibration:
            problems.append(f"calibration.{name}.path: only read with source file (source is "
                            f"{calibration['source']}). Fix: remove path or set source: file")
    for name, bench in config["benchmarks"].items():
        if name not in BUILTIN and not {"file", "hub", "demo_task"} & set(bench):
            problems.append(
                f"benchmarks.{name}: not a built-in benchmark{suggest(name, BUILTIN)} (built-in: "
                f"{', '.join(BUILTIN)}). Fix: give file (a local JSONL, CSV or Parquet) or hub, and grader"
            )
        if name not in BUILTIN and "grader" not in bench and "demo_task" not in bench:
            problems.append(f"benchmarks.{name}.grader is missing: a custom benchmark says how to grade. "
                            "Allowed: integer, number, math or choice. Fix: add grader")
        unknown = sorted(set(bench.get("columns", {})) - {"id", "problem", "answer", "choices", "correct"})
        if unknown:
            problems.append(f"benchmarks.{name}.columns: unknown column {', '.join(map(repr, unknown))}. Allowed: "
                            "id, problem, answer, choices, correct. Fix: map only these to the source's columns")
    generation = config["generation"]
    if max(generation["wait"]["times"]) and not generation["wait"]["string"].strip():
        problems.append("generation.wait.string: empty while generation.wait.times > 0. "
                        "Fix: set a word such as \"Wait\", or times: 0")
    budget, cap, context = max(generation["budgets"]), generation["answer_max_tokens"], generation["vllm"]["max_model_len"]
    if budget + cap > context:
        problems.append(
            f"generation.answer_max_tokens: the largest budget {budget} plus the answer cap {cap} is "
            f"{budget + cap} tokens, more than generation.vllm.max_model_len {context}. Fix: lower "
            f"answer_max_tokens to at most {context - budget}, lower the budgets, or raise max_model_len"
        )
    return problems


# --------------------------------------------------------------------------- stage commands

# stage -> (where in its --spec, where in config/schema.yaml, the config key named in messages,
# whether the spec must hold it). A stage run by hand gets the refusals the workflow gives.
_STAGE_PARTS = {
    "masks": [("prune", "variants.*", "variants.{variant}", True), ("dtype", "models.*.dtype", "models.{model}.dtype", False),
              ("device", "pruning.device", "pruning.device", False)],
    "stats": [("dtype", "models.*.dtype", "models.{model}.dtype", False), ("device", "pruning.device", "pruning.device", False)],
    "export": [("dtype", "models.*.dtype", "models.{model}.dtype", False)],
    "perplexity": [("length", "perplexity.length", "perplexity.length", False),
                   ("dtype", "models.*.dtype", "models.{model}.dtype", False),
                   ("device", "pruning.device", "pruning.device", False)],
    "calibration": [("calibration", "calibration.*", "calibration.{set}", True), ("task", "demo_task", "demo_task", False)],
    "train_demo": [("demo", "models.*.demo", "models.{model}.demo", True), ("task", "demo_task", "demo_task", False)],
    "convert_gguf": [("gguf", "models.*.gguf", "models.{model}.gguf", True)],
    "generate": [("generation", "generation", "generation", True), ("sampling", "models.*.sampling", "models.{model}.sampling", True),
                 ("template", "models.*.template", "models.{model}.template", True),
                 ("dtype", "models.*.dtype", "models.{model}.dtype", False)],
    "grade": [("grader", "benchmarks.*.grader", "benchmarks.{benchmark}.grader", True),
              ("timeout_s", "grading.timeout_s", "grading.timeout_s", False), ("workers", "grading.workers", "grading.workers", False)],
    "aggregate": [("budgets", "generation.budgets", "generation.budgets", True), ("seeds", "generation.seeds", "generation.seeds", True),
                  ("wait_times", "generation.wait.times", "generation.wait.times", False),
                  ("samples", "generation.samples", "generation.samples", False),
                  ("bootstrap", "tables.bootstrap", "tables.bootstrap", False),
                  ("confidence", "tables.confidence", "tables.confidence", False),
                  ("correction", "tables.correction", "tables.correction", False),
                  ("claims", "tables.claims", "tables.claims", False)],
}


def _name(value, fallback: str) -> str:
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value else fallback


def stage_problems(stage: str, spec) -> list[str]:
    """How a stage's --spec breaks the rules the workflow's config check applies."""
    if not isinstance(spec, dict):
        return [f"--spec: {in_words(spec)} is not a config slice. Allowed: a JSON object (or @file holding one), "
                "as the workflow passes it. Fix: see the stage's --help"]
    names = {"model": _name(spec.get("model") or spec.get("name"), "<model>"), "variant": _name(spec.get("variant"), "<variant>"),
             "benchmark": _name(spec.get("benchmark"), "<benchmark>"), "set": "<set>"}
    problems = []
    for field, schema_path, key, required in _STAGE_PARTS.get(stage, []):
        key = key.format(**names)
        if field not in spec:
            if required:
                problems.append(f"--spec: {field} is missing (config key {key}). Fix: pass the config slice the "
                                "workflow writes for this stage, e.g. from the job's log")
            continue
        problems += schema_problems(copy.deepcopy(spec[field]), subschema(schema_path), key)
    if not problems and stage == "masks":
        problems += variant_problems(names["variant"], spec["prune"])
    if not problems and stage == "generate":
        generation = spec["generation"]
        budget, cap = max(generation["budgets"]), generation.get("answer_max_tokens", 32768)
        context = generation.get("vllm", {}).get("max_model_len", 40960)
        if budget + cap > context:
            problems.append(f"generation.answer_max_tokens: the largest budget {budget} plus the answer cap {cap} "
                            f"exceeds generation.vllm.max_model_len {context}. Fix: lower answer_max_tokens to at "
                            f"most {context - budget}, lower the budgets, or raise max_model_len")
    return problems
