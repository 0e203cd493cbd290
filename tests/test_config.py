"""The configuration: defaults, the study grid, slices, and clear errors for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline.core import config as cfg
from pipeline.core import config_schema, slices, specs

ROOT = Path(__file__).resolve().parent.parent


def demo() -> dict:
    return cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")


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
    assert slices.budgets(config) == [512, 1024, 2048, 4096, 8192]
    assert config["generation"]["seeds"] == [7, 11, 42]
    assert config["models"]["s1.1-7B"]["sampling"] == {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    # calibration as the references sample it
    assert config["calibration"]["c4"] == {"source": "c4", "samples": 128, "length": 2048, "seed": 0}
    assert config["calibration"]["pg19"]["samples"] == 100


def test_defaults_are_filled_and_variants_pick_their_calibration():
    config = cfg.prepare(demo())
    assert config["variants"]["wanda-20"]["allocation"] == "uniform"
    assert slices.variant_calibration(config, "wanda-20") == "c4"
    assert slices.variant_calibration(config, "shortgpt-1") == "pg19"
    assert slices.variant_calibration(config, "magnitude-20") is None  # magnitude reads no data
    assert slices.variant_calibration(config, "dense") is None
    assert config["generation"]["answer_max_tokens"] == 16
    assert config["generation"]["vllm"]["enable_prefix_caching"] is True


def test_slices_change_only_with_what_they_read():
    base = cfg.prepare(demo())
    changed = copy.deepcopy(demo())
    changed["variants"]["wanda-20"]["sparsity"] = 0.3
    changed["grading"] = {"timeout_s": 9}
    changed = cfg.prepare(changed)
    assert slices.mask_slice(base, "tiny-qwen3", "wanda-20") != slices.mask_slice(changed, "tiny-qwen3", "wanda-20")
    assert slices.mask_slice(base, "tiny-qwen3", "wanda-50") == slices.mask_slice(changed, "tiny-qwen3", "wanda-50")
    assert slices.generation_slice(base, "tiny-qwen3", "dense", "math500") == slices.generation_slice(changed, "tiny-qwen3", "dense", "math500")
    assert slices.grading_slice(base, "math500") != slices.grading_slice(changed, "math500")
    # canonical: key order does not matter
    assert specs.canonical_json({"b": 1, "a": [1, 2]}) == specs.canonical_json({"a": [1, 2], "b": 1})


def test_duplicate_variant_names_are_refused(tmp_path):
    text = (ROOT / "tests" / "configs" / "random_demo.yaml").read_text().replace(
        "  wanda-50: {method: wanda, sparsity: 0.5}", "  wanda-20: {method: wanda, sparsity: 0.5}"
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError, match=r"dup.yaml, line \d+, column 3: duplicate key 'wanda-20'"):
        cfg.load(path)


def test_every_schema_default_satisfies_the_schema():
    schema = config_schema.schema()
    config = cfg.prepare(demo())
    json.dumps(config)  # plain data, usable as a Snakemake param
    assert set(config) <= set(schema["properties"])
    assert yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())["additionalProperties"] is False


def test_config_imports_no_stage_or_library_module():
    """The config check runs before anything heavy: no stage, torch, pandas or data loading."""
    import subprocess
    import sys

    code = ("import sys, pipeline.core.config; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('pipeline') or m in ('pandas', 'torch'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    # the start-up hook that install.sh puts in the environment may be loaded already
    assert set(loaded) - {"pipeline.core.configfile_hook"} == {
        "pipeline", "pipeline.core", "pipeline.core.benchmark_defs", "pipeline.core.config", "pipeline.core.config_checks",
        "pipeline.core.config_schema", "pipeline.core.slices", "pipeline.core.specs"}
