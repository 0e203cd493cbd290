"""Every stage runs without Snakemake: `python -m pipeline.stages.<stage> --help`."""

from __future__ import annotations

import subprocess
import sys

import pytest

STAGES = ["train_demo", "base_model", "benchmark_data", "calibration", "stats", "masks", "export", "perplexity",
          "generate", "grade", "judge", "aggregate", "plots"]
# commands besides the stages
TOOLS = ["pipeline.core.provenance", "pipeline.core.config", "pipeline.models.demo_model", "pipeline.cost"]


@pytest.mark.parametrize("module", [f"pipeline.stages.{stage}" for stage in STAGES] + TOOLS)
def test_stage_has_a_command_line(module):
    # generous: importing torch on a shared, loaded machine takes a while
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "--" in result.stdout


# stage -> (arguments besides --spec, a bad spec, the config key the refusal names). Inputs do
# not exist: a refusal that names the key shows the spec was checked before anything was read.
MISSING = "/nonexistent/input"
BAD_SPECS = {
    "masks": (["--model", MISSING, "--out", "o.parquet"],
              {"variant": "v", "model": {"name": "m"}, "prune": {"method": "magnitude", "sparsity": 1.0}},
              "variants.v.sparsity"),
    "stats": (["--kind", "alphas", "--model", MISSING, "--out", "o.parquet"], {"device": "gpu"}, "pruning.device"),
    "export": (["--model", MISSING, "--masks", MISSING, "--out", "o"], {"model": {"name": "m"}, "dtype": "fp8"},
               "models.m.dtype"),
    "perplexity": (["--model", MISSING, "--text", MISSING, "--out", "o.parquet"], {"length": 0}, "perplexity.length"),
    "calibration": (["--model", MISSING, "--out", "o.parquet"], {"calibration": {"source": "wiki"}},
                    "calibration.<set>.source"),
    "generate": (["--model", MISSING, "--benchmark", MISSING, "--out", "o.parquet"],
                 {"model": "m", "template": "qwen3", "sampling": {}, "generation": {"budgets": [0], "seeds": [1]}},
                 "generation.budgets.0"),
    "grade": (["--generations", MISSING, "--out", "o.parquet"], {"benchmark": "b", "grader": "exact"},
              "benchmarks.b.grader"),
    "aggregate": (["--grades", MISSING, "--out", "o.csv"], {"budgets": [16], "seeds": [1], "confidence": 1.5},
                  "tables.confidence"),
}


@pytest.mark.parametrize("stage", sorted(BAD_SPECS))
def test_stage_refuses_a_bad_spec_before_reading_anything(stage, capsys):
    import importlib
    import json

    args, spec, key = BAD_SPECS[stage]
    module = importlib.import_module(f"pipeline.stages.{stage}")
    with pytest.raises(SystemExit) as exit_:
        module.main([*args, "--spec", json.dumps(spec)])
    assert exit_.value.code == 1
    message = capsys.readouterr().err
    assert key in message and "Fix" in message and "Traceback" not in message


def test_masks_command_refuses_nm_with_n_above_m():
    import json

    spec = {"variant": "v", "model": {"name": "m"}, "prune": {"method": "wanda", "nm": "4:2"}}
    result = subprocess.run([sys.executable, "-m", "pipeline.stages.masks", "--model", MISSING, "--out", "o.parquet",
                             "--spec", json.dumps(spec)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "variants.v.nm" in result.stderr and "N must be below M" in result.stderr
    assert "Traceback" not in result.stderr and "IndexError" not in result.stderr
