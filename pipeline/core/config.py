"""Load, validate and slice the workflow configuration.

Every rule receives only its own slice of the config, in canonical JSON, as a Snakemake
param: a changed setting reruns exactly the jobs that read it. All slicing lives here so the
Snakefile and the tests agree on what each job depends on.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import sys
from pathlib import Path

import jsonschema
import yaml

from pipeline.data.benchmark_defs import BUILTIN, resolve_definition
from pipeline.core.specs import canonical_json, spec_hash  # noqa: F401 - part of this module's interface

SCHEMA_PATH = Path(__file__).resolve().parent.parent.parent / "config" / "schema.yaml"

UNSTRUCTURED = ("magnitude", "wanda", "sparsegpt")
STRUCTURED = ("shortgpt", "reverse")
# methods whose masks (or allocations) need calibration activations
NEEDS_CALIBRATION = ("wanda", "sparsegpt", "shortgpt")


VERBOSE_ENV = "PRUNE_TTS_VERBOSE"


def verbose() -> bool:
    """PRUNE_TTS_VERBOSE=1 shows refusals with their traceback and full paths."""
    return os.environ.get(VERBOSE_ENV, "0").lower() in ("1", "true", "yes")


class ConfigError(ValueError):
    """Configuration problems, worded for the user: each names the key, what is wrong, what is
    allowed and the fix. `problems` holds one line per problem."""

    title = "the configuration cannot be used"

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(f"{self.title}:\n  - " + "\n  - ".join(self.problems))


def refusal(error: Exception) -> str:
    """The short block printed for a refused configuration or run."""
    problems = getattr(error, "problems", [str(error)])
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    title = getattr(error, "title", "cannot start")
    hint = getattr(error, "hint", None)
    return (f"prune-tts: {title} ({count}; nothing was run):\n  - " + "\n  - ".join(problems)
            + (f"\n{hint}" if hint else "") + f"\n(set {VERBOSE_ENV}=1 to see where this was raised)")


def or_exit(function, *args, **kwargs):
    """Call `function`; on a ConfigError (or a subclass) print the refusal and exit with status 1,
    without a traceback, unless PRUNE_TTS_VERBOSE=1."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        if verbose():
            raise
        print(refusal(error), file=sys.stderr)
        raise SystemExit(1) from None


def shown(path: str | Path) -> str:
    """A path as the user gave it: relative to the working directory when it lies below it."""
    path = str(path)
    if verbose() or not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise ConfigError(
                f"{shown(mark.name)}, line {mark.line + 1}, column {mark.column + 1}: duplicate key {key!r}. "
                "Each model, variant, benchmark and setting may appear once. Fix: rename or remove one of them"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict:
    """Read a config file; a missing file, a YAML syntax error or a duplicate key is a ConfigError
    naming the file (and the line and column)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {shown(path)} {what}. Fix: pass an existing YAML file, e.g. "
                          "--configfile config/demo.yaml (targets go before --configfile)")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - safe loader subclass
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {shown(path)} cannot be read ({error.__class__.__name__}). "
                          "Fix: check its permissions and that it is UTF-8 text") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(filter(None, [error.context, error.problem]))
        raise ConfigError(f"{shown(path)}{where}: not valid YAML ({what}). Fix: check the indentation (spaces, "
                          "no tabs), colons and brackets on that line and the one before") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {shown(path)} holds {_what(data)}, not a mapping of sections. Fix: start "
                          "from config/demo.yaml or config/config.yaml")
    return data or {}


def load(path: str | Path) -> dict:
    """Read, validate and fill defaults of a config file."""
    return prepare(load_yaml(path))


def workflow_config(config: dict, configfiles: list) -> dict:
    """What the Snakefile runs: every config file re-read with the strict loader (Snakemake's
    own silently keeps the last of two duplicate keys), then `prepare`."""
    problems = []
    for path in configfiles:
        try:
            load_yaml(path)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return prepare(config)


@functools.cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text()


def schema() -> dict:
    return yaml.safe_load(_schema_text())


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

TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "text in quotes or plain",
              "boolean": "true or false", "array": "a list like [1, 2]", "object": "a mapping like {key: value}",
              "null": "null"}


def _what(value) -> str:
    """What the user wrote, in words."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true or false)"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing (null)" if value is None else repr(value)


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def _resolve(schema: dict) -> dict:
    """A subschema with its $ref (to #/$defs/...) merged in."""
    if isinstance(schema, dict) and "$ref" in schema:
        target = _root()["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema if isinstance(schema, dict) else {}


def _root() -> dict:
    return _ROOT


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_words(schema: dict) -> str:
    kind = "a whole number" if schema.get("type") == "integer" else "a number"
    low = ("above", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else \
        ("of at least", schema["minimum"]) if "minimum" in schema else None
    high = ("below", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else \
        ("at most", schema["maximum"]) if "maximum" in schema else None
    if low and high:
        if low[0] == "above" and high[0] == "below":
            return f"{kind} between {_number(low[1])} and {_number(high[1])}, both excluded"
        if low[0] != "above" and high[0] != "below":
            return f"{kind} from {_number(low[1])} to {_number(high[1])}"
        return f"{kind} {low[0]} {_number(low[1])} and {high[0]} {_number(high[1])}"
    if low:
        return f"{kind} {low[0]} {_number(low[1])}"
    if high:
        return f"{kind} {high[0]} {_number(high[1])}"
    return kind


def allowed(schema: dict) -> str:
    """What a schema allows, in words (no regexes, no type names)."""
    schema = _resolve(schema)
    if "allowed" in schema:
        return schema["allowed"]
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _range_words(schema)
    if isinstance(kind, list):
        return " or ".join(TYPE_WORDS.get(k, k) for k in kind)
    if kind == "array":
        words = "a list like [1, 2]" + (f", each {allowed(schema['items'])}" if schema.get("items") else "")
        if schema.get("minItems"):
            words += f", at least {schema['minItems']} value{'s' if schema['minItems'] > 1 else ''}"
        return words + (", none repeated" if schema.get("uniqueItems") else "")
    if kind == "object" and "properties" in schema and schema.get("additionalProperties") is False:
        return "a mapping with keys among " + ", ".join(schema["properties"])
    return TYPE_WORDS.get(kind, "a value")


def _suggest(word, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: jsonschema.ValidationError) -> str:
    """One line: the key, what is wrong, what is allowed (in words), the fix."""
    key = _key(error.absolute_path)
    schema = _resolve(error.schema)
    value = error.instance
    where = key or "the top level"
    if error.validator == "additionalProperties":
        names = list(schema.get("properties", {}))
        extra = sorted(set(value) - set(names), key=str)
        return (f"{where}: unknown key {', '.join(map(repr, extra))}{_suggest(extra[0], names)}. Allowed keys: "
                f"{', '.join(names)}. Fix: correct the spelling or remove it")
    if "propertyNames" in error.relative_schema_path:
        return (f"{where}: the name {value!r} is not allowed. Allowed: {allowed(_root()['$defs']['name'])}. "
                "Fix: rename it")
    if error.validator == "enum":
        return (f"{key}: {value!r} is not one of the choices{_suggest(value, error.validator_value)}. "
                f"Allowed: {', '.join(map(str, error.validator_value))}. Fix: pick one of them")
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in value]
        full = ".".join(filter(None, [key, missing[0]]))
        sub = schema.get("properties", {}).get(missing[0], {})
        return f"{full} is missing and has no default. Allowed: {allowed(sub)}. Fix: add {full}"
    if error.validator == "type":
        if key.endswith(".nm") and isinstance(value, int) and not isinstance(value, bool):
            n, m = divmod(value, 60)
            return (f"{key}: YAML read an unquoted N:M as the base-60 number {value}. Allowed: "
                    f"{allowed(schema)}. Fix: quote it, nm: \"{n}:{m}\"")
        if schema.get("type") == "boolean" and str(value).lower() in ("true", "false", "yes", "no"):
            return (f"{key}: {_what(value)} is text, not true or false. Fix: write true or false without quotes "
                    f"(on the command line: --config {key}=True or {key}=False)")
        return f"{key}: {_what(value)} is the wrong kind of value. Allowed: {allowed(schema)}. Fix: set {key} to that"
    if error.validator in ("exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum"):
        return f"{key}: {_what(value)} is out of range. Allowed: {allowed(schema)}. Fix: set {key} within it"
    if error.validator == "pattern":
        return f"{key}: {_what(value)} is not allowed. Allowed: {allowed(schema)}. Fix: set {key} to that"
    if error.validator == "minItems":
        return f"{key}: the list is empty. Allowed: {allowed(schema)}. Fix: list at least one"
    if error.validator == "uniqueItems":
        return f"{key}: {value} lists a value twice. Fix: list each value once"
    if error.validator == "minProperties":
        return f"{key}: none is defined. Fix: add at least one entry under {key}"
    return f"{key or 'the top level'}: {error.message}. Allowed: {allowed(schema)}"


def schema_problems(instance, subschema: dict, prefix: str = "", fill: bool = False) -> list[str]:
    """Lines describing how `instance` breaks `subschema` (a part of config/schema.yaml), keys
    prefixed by `prefix`. With `fill`, defaults are filled into `instance` in place."""
    validator = (_Validator if fill else jsonschema.Draft202012Validator)({**subschema, "$defs": _root()["$defs"]})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in errors:
        if prefix:
            error.path.extendleft(reversed(prefix.split(".")))
        lines.append(_describe(error))
    return lines


def prepare(config: dict) -> dict:
    """Validate `config` against config/schema.yaml and the rules a schema cannot state,
    fill in defaults, and return a new dict. Raises ConfigError naming every problem."""
    config = copy.deepcopy(config)
    problems = schema_problems(config, _root(), fill=True)
    if problems:
        raise ConfigError(problems)
    _fill_variant_defaults(config)
    wait = config["generation"]["wait"]
    wait["times"] = wait_settings(wait["times"])
    problems = _semantic_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _variant_schema() -> dict:
    return _root()["properties"]["variants"]["additionalProperties"]


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
                for name, prop in _variant_schema()["properties"][option]["properties"].items():
                    if "default" in prop:
                        spec[option].setdefault(name, prop["default"])


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


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    for name, model in config["models"].items():
        key = f"models.{name}"
        sources = [s for s in ("hub", "path", "demo") if s in model]
        if len(sources) != 1:
            problems.append(
                f"{key}: found {' and '.join(sources) or 'no source'}. Allowed: exactly one of hub (a Hub id), "
                "path (a local checkpoint folder) or demo (a tiny offline model). Fix: keep one"
            )
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
                f"{_suggest(calibration, config['calibration'])}. Allowed: "
                f"{', '.join(config['calibration']) or 'none defined yet'}. Fix: add calibration.{calibration} "
                f"or pick a defined one"
            )
    for i, pair in enumerate(config["tables"]["claims"]["pairs"]):
        for name in pair:
            if name not in config["variants"]:
                problems.append(f"tables.claims.pairs[{i}]: {name!r} is not a variant{_suggest(name, config['variants'])}. "
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
                f"benchmarks.{name}: not a built-in benchmark{_suggest(name, BUILTIN)} (built-in: "
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
    keys = ("hub", "revision") if "hub" in spec else ("path",) if "path" in spec else ("demo",)
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
    task = {"task": config["demo_task"]} if config["perplexity"]["text"] == "demo_task" else {}
    return {"model": model_source(config, model), "variant": variant, "dtype": config["models"][model]["dtype"],
            "device": config["pruning"]["device"], **config["perplexity"], **task}


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


_ROOT = schema()


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


def _subschema(path: str) -> dict:
    node = _root()
    for part in path.split("."):
        node = _resolve(node)
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return node


def _name(value, fallback: str) -> str:
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value else fallback


def schema_defaults(path: str) -> dict:
    """The defaults config/schema.yaml gives the keys of the object at `path` ("demo_task",
    "models.*.demo.train"): one place for them, also where a stage runs without the workflow."""
    node = _resolve(_subschema(path))
    return {key: prop["default"] for key, prop in node["properties"].items() if "default" in prop}


def stage_problems(stage: str, spec) -> list[str]:
    """How a stage's --spec breaks the rules the workflow's config check applies."""
    if not isinstance(spec, dict):
        return [f"--spec: {_what(spec)} is not a config slice. Allowed: a JSON object (or @file holding one), "
                "as the workflow passes it. Fix: see the stage's --help"]
    names = {"model": _name(spec.get("model"), "<model>"), "variant": _name(spec.get("variant"), "<variant>"),
             "benchmark": _name(spec.get("benchmark"), "<benchmark>"), "set": "<set>"}
    problems = []
    for field, schema_path, key, required in _STAGE_PARTS.get(stage, []):
        key = key.format(**names)
        if field not in spec:
            if required:
                problems.append(f"--spec: {field} is missing (config key {key}). Fix: pass the config slice the "
                                "workflow writes for this stage, e.g. from the job's log")
            continue
        problems += schema_problems(copy.deepcopy(spec[field]), _subschema(schema_path), key)
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


def check_stage(stage: str, spec) -> None:
    """Refuse a stage's bad --spec before it loads anything (see `stage_problems`)."""
    problems = stage_problems(stage, spec)
    if problems:
        raise ConfigError(problems)


def main(argv=None) -> int:
    """python -m pipeline.core.config FILE [FILE ...]: check config files as the workflow would,
    without Snakemake (which reads --configfile files itself, before the workflow's checks)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", help="config files, merged as Snakemake merges --configfile files")
    args = parser.parse_args(argv)
    merged: dict = {}
    for path in args.files:
        data = or_exit(load_yaml, path)
        for key, value in data.items():  # Snakemake merges config files key by key, recursively
            merged[key] = _merge(merged.get(key), value)
    config = or_exit(prepare, merged)
    print(f"{', '.join(args.files)}: valid; {len(config['models'])} model(s), {len(config['variants'])} variant(s), "
          f"{len(config['benchmarks'])} benchmark(s), budgets {budgets(config)}, seeds {config['generation']['seeds']}")
    return 0


def _merge(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merge(old.get(k), v) for k, v in new.items()}}
    return new


if __name__ == "__main__":
    sys.exit(main())
