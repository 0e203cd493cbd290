"""Every stage runs without Snakemake: `python -m pipeline.<stage> --help`."""

from __future__ import annotations

import subprocess
import sys

import pytest

STAGES = ["base_model", "benchmarks", "calibration", "stats", "masks", "export", "perplexity",
          "generate", "grade", "aggregate", "plots", "provenance", "demo_model"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_has_a_command_line(stage):
    result = subprocess.run([sys.executable, "-m", f"pipeline.{stage}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "--" in result.stdout
