"""The configuration: defaults, the study grid, slices, and clear errors for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline import config as cfg

ROOT = Path(__file__).resolve().parent.parent


def demo() -> dict:
    return cfg.load_yaml(ROOT / "config" / "demo.yaml")


def test_study_config_describes_the_grid_of_paper_a():
    config = cfg.load(ROOT / "config" / "config.yaml")
    assert set(config["models"]) == {"s1.1-7B", "qwen3-8B"}
    assert config["models"]["s1.1-7B"]["hub"] == "simplescaling/s1.1-7B"
    assert config["models"]["qwen3-8B"]["template"] == "qwen3"
    methods = {(v["method"], v.get("sparsity"), v.get("layers")) for v in config["variants"].values()}
    assert ("dense", None, None) in methods
    for n in (1, 2):
        assert ("shortgpt", None, n) in methods
    for method in ("magnitude", "wanda"):
        for sparsity in (0.1, 0.2):
            assert (method, sparsity, None) in methods
    assert set(config["benchmarks"]) >= {"aime24", "amc23", "math500", "gpqa_diamond"}
    assert cfg.budgets(config) == [512, 1024, 2048, 4096, 8192]
    assert config["generation"]["seeds"] == [7, 11, 42]
    assert config["models"]["s1.1-7B"]["sampling"] == {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    # calibration as the references sample it
    assert config["calibration"]["c4"] == {"source": "c4", "samples": 128, "length": 2048, "seed": 0}
    assert config["calibration"]["pg19"]["samples"] == 100


def test_defaults_are_filled_and_variants_pick_their_calibration():
    config = cfg.prepare(demo())
    assert config["variants"]["wanda-20"]["allocation"] == "uniform"
    assert cfg.variant_calibration(config, "wanda-20") == "c4"
    assert cfg.variant_calibration(config, "shortgpt-1") == "pg19"
    assert cfg.variant_calibration(config, "magnitude-20") is None  # magnitude reads no data
    assert cfg.variant_calibration(config, "dense") is None
    assert config["generation"]["answer_max_tokens"] == 16
    assert config["generation"]["vllm"]["enable_prefix_caching"] is True


def test_slices_change_only_with_what_they_read():
    base = cfg.prepare(demo())
    changed = copy.deepcopy(demo())
    changed["variants"]["wanda-20"]["sparsity"] = 0.3
    changed["grading"] = {"timeout_s": 9}
    changed = cfg.prepare(changed)
    assert cfg.mask_slice(base, "tiny-qwen3", "wanda-20") != cfg.mask_slice(changed, "tiny-qwen3", "wanda-20")
    assert cfg.mask_slice(base, "tiny-qwen3", "wanda-50") == cfg.mask_slice(changed, "tiny-qwen3", "wanda-50")
    assert cfg.generation_slice(base, "tiny-qwen3", "dense", "math500") == cfg.generation_slice(changed, "tiny-qwen3", "dense", "math500")
    assert cfg.grading_slice(base, "math500") != cfg.grading_slice(changed, "math500")
    # canonical: key order does not matter
    assert cfg.canonical_json({"b": 1, "a": [1, 2]}) == cfg.canonical_json({"a": [1, 2], "b": 1})


def _edit(path: str, value):
    config = demo()
    keys = path.split(".")
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return config


_DELETE = object()

BAD = [
    # (edit, value, words the message must contain)
    ("variants.wanda-20.sparsity", 1.5, ["variants.wanda-20.sparsity", "a number in (0, 1)"]),
    ("variants.wanda-20.sparsity", 0, ["variants.wanda-20.sparsity", "a number in (0, 1)"]),
    ("variants.wanda-20.sparsity", "high", ["variants.wanda-20.sparsity", "number"]),
    ("variants.wanda-20.method", "wandda", ["variants.wanda-20.method", "wandda", "magnitude, wanda, sparsegpt"]),
    ("variants.wanda-20.allocation", "owll", ["variants.wanda-20.allocation", "uniform, owl, alphapruning, layerif"]),
    ("variants.wanda-20.sparsity", _DELETE, ["variants.wanda-20", "needs sparsity"]),
    ("variants.wanda-20.spars", 0.2, ["unknown key 'spars'", "variants.wanda-20", "sparsity"]),
    ("variants.shortgpt-1.layers", _DELETE, ["variants.shortgpt-1", "needs layers"]),
    ("variants.shortgpt-1.layers", 0, ["variants.shortgpt-1.layers", "an integer in [1, inf)"]),
    ("variants.dense.sparsity", 0.2, ["variants.dense.sparsity", "not used by method dense"]),
    ("variants.wanda-20.nm", "4:2", ["variants.wanda-20.nm", "N must be below M"]),
    ("variants.wanda-20.calibration", "wikitext", ["calibration 'wikitext' is not defined"]),
    ("variants.bad name", {"method": "dense"}, ["bad name", "does not match"]),
    ("generation.budgets", [16, -32], ["generation.budgets.1", "minimum"]),
    ("generation.budgets", [16, 16], ["generation.budgets", "non-unique"]),
    ("generation.budgets", [16.5], ["generation.budgets.0", "integer"]),
    ("generation.budgets", [], ["generation.budgets", "should be non-empty"]),
    ("generation.seeds", _DELETE, ["generation", "'seeds' is a required property"]),
    ("models.tiny-qwen3.template", "llama2", ["models.tiny-qwen3.template", "s1, qwen3, generic"]),
    ("models.tiny-qwen3.hub", "Qwen/Qwen3-8B", ["models.tiny-qwen3", "exactly one of hub"]),
    ("models.tiny-qwen3.demo", {"hidden": 64, "heads": 4, "kv_heads": 1}, ["head size", "32"]),
    ("benchmarks.mystery", {}, ["benchmarks.mystery", "not a built-in benchmark", "grader"]),
    ("calibration.c4.source", "wiki", ["calibration.c4.source", "c4, pg19, wikitext2, file"]),
    ("calibration.c4.path", _DELETE, ["calibration.c4", "needs path"]),
    ("grading.timeout_s", -1, ["grading.timeout_s"]),
    ("generaton", {}, ["unknown key 'generaton'", "top level"]),
]


@pytest.mark.parametrize("path,value,words", BAD, ids=[f"{p}={v if v is not _DELETE else 'deleted'}" for p, v, _ in BAD])
def test_bad_config_is_refused_with_a_message_naming_the_key(path, value, words):
    with pytest.raises(cfg.ConfigError) as error:
        cfg.prepare(_edit(path, value))
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_duplicate_variant_names_are_refused(tmp_path):
    text = (ROOT / "config" / "demo.yaml").read_text().replace(
        "  wanda-50: {method: wanda, sparsity: 0.5}", "  wanda-20: {method: wanda, sparsity: 0.5}"
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError, match="duplicate key 'wanda-20'"):
        cfg.load(path)


def test_every_schema_default_satisfies_the_schema():
    schema = cfg.schema()
    config = cfg.prepare(demo())
    json.dumps(config)  # plain data, usable as a Snakemake param
    assert set(config) <= set(schema["properties"])
    assert yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())["additionalProperties"] is False


def test_config_imports_no_stage_or_library_module():
    """The config check runs before anything heavy: no stage, torch, pandas or data loading."""
    import subprocess
    import sys

    code = ("import sys, pipeline.config; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('pipeline') or m in ('pandas', 'torch'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert set(loaded) == {"pipeline", "pipeline.config", "pipeline.specs", "pipeline.benchmark_defs"}
