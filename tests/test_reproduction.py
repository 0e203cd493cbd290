"""Comparing two runs of one config (pipeline.reporting.reproduction): what the documented
figures may move on another machine, and what two results folders share."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from pipeline.reporting.reproduction import compare_runs, tolerance


def test_tolerance_is_four_deviations_of_two_draws_and_at_least_two_points():
    assert tolerance(0.5, "accuracy", 800) == pytest.approx(4 * (2 * 0.25 / 800) ** 0.5)  # 0.1
    assert tolerance(0.5, "pass@4", 800) == tolerance(0.5, "accuracy", 800)
    assert tolerance(1.0, "accuracy", 800) == tolerance(0.0, "accuracy", 800) == 0.02
    assert tolerance(0.2, "accuracy", 800) < tolerance(0.5, "accuracy", 800)
    assert tolerance(0.5, "accuracy", 80) > tolerance(0.5, "accuracy", 800)
    assert tolerance(2.0, "perplexity", 800) == pytest.approx(0.06)


def _results(folder, accuracy=0.5, zeroed=b"\x0f", thinking="a1 b2", weight=1.0):
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame([{"model": "m", "variant": v, "benchmark": "x", "budget": 8, "wait_times": 0,
                   "accuracy": accuracy if v == "wanda-50" else 0.9, "pass@4": 1.0, "perplexity": 1.5,
                   "n_problems": 100, "n_seeds": 2, "n_samples": 4} for v in ("dense", "wanda-50")]
                 ).to_csv(folder / "tables" / "main.csv", index=False)
    (folder / "masks" / "m").mkdir(parents=True)
    pd.DataFrame({"block": [0], "name": ["mlp.up_proj"], "zeroed": [zeroed], "values": [b"\x00"]}).to_parquet(
        folder / "masks" / "m" / "wanda-50.parquet")
    pd.DataFrame({"block": [0, 1], "score": [0.9, 0.1], "removed": [False, True]}).to_parquet(
        folder / "masks" / "m" / "shortgpt-1.parquet")
    (folder / "checkpoints" / "m" / "wanda-50").mkdir(parents=True)
    save_file({"w": torch.full((2, 2), weight)}, str(folder / "checkpoints" / "m" / "wanda-50" / "model.safetensors"))
    (folder / "generations" / "m" / "wanda-50").mkdir(parents=True)
    pd.DataFrame({"thinking": [thinking, "c3"], "answer": ["7", "3"]}).to_parquet(
        folder / "generations" / "m" / "wanda-50" / "x.parquet")
    return folder


def test_identical_runs_share_everything(tmp_path):
    a = _results(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    out = compare_runs(a, b)
    assert out["cells"] == 2 and out["accuracy_identical"] == 2 and out["accuracy_max_share_of_tolerance"] == 0
    assert (out["masks_same"], out["masks_differing"]) == (2, [])
    assert out["checkpoint_max_weight_diff"] == 0
    assert (out["generated_rows_identical"], out["generated_rows"]) == (2, 2)


def test_what_moved_is_named(tmp_path):
    a = _results(tmp_path / "a")
    b = _results(tmp_path / "b", accuracy=0.55, zeroed=b"\x1f", thinking="a1 b3", weight=1.5)
    out = compare_runs(a, b)
    assert out["accuracy_identical"] == 1 and out["accuracy_max_diff"] == pytest.approx(0.05)
    assert out["accuracy_max_share_of_tolerance"] == pytest.approx(0.05 / tolerance(0.5, "accuracy", 800))
    assert out["masks_differing"] == ["masks/m/wanda-50.parquet"] and out["masks_same"] == 1
    assert out["checkpoint_max_weight_diff"] == pytest.approx(0.5)
    assert (out["generated_rows_identical"], out["generated_rows"]) == (1, 2)
