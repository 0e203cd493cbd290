"""config/schema.yaml: reading it, validating against it (filling defaults), and wording what
breaks it: one line per problem, naming the key, what is allowed and the fix."""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent.parent / "config" / "schema.yaml"


@functools.cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text()


def schema() -> dict:
    return yaml.safe_load(_schema_text())


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


def in_words(value) -> str:
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
        target = root()["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema if isinstance(schema, dict) else {}


def root() -> dict:
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


def suggest(word, choices) -> str:
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
        return (f"{where}: unknown key {', '.join(map(repr, extra))}{suggest(extra[0], names)}. Allowed keys: "
                f"{', '.join(names)}. Fix: correct the spelling or remove it")
    if "propertyNames" in error.relative_schema_path:
        return (f"{where}: the name {value!r} is not allowed. Allowed: {allowed(root()['$defs']['name'])}. "
                "Fix: rename it")
    if error.validator == "enum":
        return (f"{key}: {value!r} is not one of the choices{suggest(value, error.validator_value)}. "
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
            return (f"{key}: {in_words(value)} is text, not true or false. Fix: write true or false without quotes "
                    f"(on the command line: --config {key}=True or {key}=False)")
        return f"{key}: {in_words(value)} is the wrong kind of value. Allowed: {allowed(schema)}. Fix: set {key} to that"
    if error.validator in ("exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum"):
        return f"{key}: {in_words(value)} is out of range. Allowed: {allowed(schema)}. Fix: set {key} within it"
    if error.validator == "pattern":
        return f"{key}: {in_words(value)} is not allowed. Allowed: {allowed(schema)}. Fix: set {key} to that"
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
    validator = (_Validator if fill else jsonschema.Draft202012Validator)({**subschema, "$defs": root()["$defs"]})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in errors:
        if prefix:
            error.path.extendleft(reversed(prefix.split(".")))
        lines.append(_describe(error))
    return lines


def variant_schema() -> dict:
    return root()["properties"]["variants"]["additionalProperties"]


def subschema(path: str) -> dict:
    node = root()
    for part in path.split("."):
        node = _resolve(node)
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return node


def schema_defaults(path: str) -> dict:
    """The defaults config/schema.yaml gives the keys of the object at `path` ("demo_task",
    "models.*.demo.train"): one place for them, also where a stage runs without the workflow."""
    node = _resolve(subschema(path))
    return {key: prop["default"] for key, prop in node["properties"].items() if "default" in prop}


_ROOT = schema()
