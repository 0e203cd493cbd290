"""Interrupted work loses nothing that was finished, and identical inputs give identical masks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from pipeline.core import artifacts

SPEC = {"model": {"name": "tiny"}, "dtype": "float32", "variant": "sparsegpt-50", "device": "cpu",
        "prune": {"method": "sparsegpt", "sparsity": 0.5, "allocation": "uniform"}}


@pytest.fixture(scope="module")
def slow_case(tiny_model_factory, tmp_path_factory):
    """A model and calibration set large enough that SparseGPT takes a few seconds per block."""
    model = tiny_model_factory(architecture="llama", layers=4, hidden=256, heads=8, kv_heads=8, intermediate=512)
    folder = tmp_path_factory.mktemp("resume")
    calibration = folder / "calibration.parquet"
    ids = [[(7 * i + 13 * j) % 500 + 5 for j in range(256)] for i in range(16)]
    artifacts.write_table(pd.DataFrame({"sample": range(16), "input_ids": ids}), calibration)
    return model, calibration, folder


def _masks(model, calibration, out) -> list[str]:
    return [sys.executable, "-m", "pipeline.stages.masks", "--model", str(model), "--calibration", str(calibration),
            "--spec", json.dumps(SPEC), "--out", str(out)]


def test_killed_mask_job_leaves_no_output_and_a_rerun_matches_an_uninterrupted_run(slow_case):
    model, calibration, folder = slow_case
    out = folder / "killed" / "masks.parquet"
    job = subprocess.Popen(_masks(model, calibration, out), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in job.stderr:  # wait until the job is inside the block loop
        if "1/4" in line or time.time() > deadline:
            break
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed job left an output behind"

    subprocess.run(_masks(model, calibration, out), check=True, capture_output=True)
    fresh = folder / "fresh" / "masks.parquet"
    subprocess.run(_masks(model, calibration, fresh), check=True, capture_output=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["masks.parquet"]  # no leftovers
    rerun, reference = artifacts.read_table(out), artifacts.read_table(fresh)
    assert len(rerun) == 4 * 7
    # bit-identical masks and SparseGPT weight updates from identical inputs
    assert rerun["zeroed"].tolist() == reference["zeroed"].tolist()
    assert rerun["values"].tolist() == reference["values"].tolist()
    assert artifacts.read_provenance(out)["config_hash"] == artifacts.read_provenance(fresh)["config_hash"]
