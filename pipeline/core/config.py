"""Load and validate the workflow configuration, and refuse what cannot be used.

`prepare` checks a config against config/schema.yaml (pipeline.core.config_schema) and the
rules a schema cannot state (pipeline.core.config_checks) and fills in defaults; the per-rule
slices live in pipeline.core.slices. `python -m pipeline.core.config FILE` checks config files.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import yaml

from pipeline.core.config_checks import semantic_problems, stage_problems
from pipeline.core.config_schema import in_words, root, schema_problems, variant_schema
from pipeline.core.slices import UNSTRUCTURED, budgets, wait_settings

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
        raise ConfigError(f"config file {shown(path)} holds {in_words(data)}, not a mapping of sections. Fix: start "
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


def prepare(config: dict) -> dict:
    """Validate `config` against config/schema.yaml and the rules a schema cannot state,
    fill in defaults, and return a new dict. Raises ConfigError naming every problem."""
    config = copy.deepcopy(config)
    problems = schema_problems(config, root(), fill=True)
    if problems:
        raise ConfigError(problems)
    _fill_variant_defaults(config)
    wait = config["generation"]["wait"]
    wait["times"] = wait_settings(wait["times"])
    problems = semantic_problems(config)
    if problems:
        raise ConfigError(problems)
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
                for name, prop in variant_schema()["properties"][option]["properties"].items():
                    if "default" in prop:
                        spec[option].setdefault(name, prop["default"])


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
