"""Structured and unstructured pruning at the same share of block parameters, side by side."""

from __future__ import annotations

import pandas as pd

from pipeline.reporting import plots

VARIANTS = {"dense": ("dense", None, None), "wanda-25": ("wanda", 0.25, None), "wanda-50": ("wanda", 0.5, None),
            "shortgpt-1": ("shortgpt", None, 1)}


def _figure(monkeypatch, tmp_path, depths):
    rows = [dict(model="m", variant=v, benchmark="x", budget=64, wait_times=0, status="ok", method=method,
                 sparsity=sparsity, nm=None, allocation="uniform" if method == "wanda" else None, layers=layers,
                 accuracy=0.3 if layers else 0.6, ci_low=0.2 if layers else 0.5, ci_high=0.4 if layers else 0.7)
            for v, (method, sparsity, layers) in VARIANTS.items()]
    spec = {"models": ["m"], "variants": {v: {"method": spec[0]} for v, spec in VARIANTS.items()},
            "benchmarks": ["x"], "budgets": [64], "wait_times": [0], "depths": depths}
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    plots.accuracy_vs_sparsity(pd.DataFrame(rows), "m", spec, tmp_path)
    return saved[0].axes[0]


def test_one_of_four_blocks_removed_sits_at_a_quarter_beside_unstructured(monkeypatch, tmp_path):
    ax = _figure(monkeypatch, tmp_path, {"m": 4})
    handles, names = ax.get_legend_handles_labels()
    assert "shortgpt, 1 block removed" in names
    point = handles[names.index("shortgpt, 1 block removed")][0]  # the errorbar's marker line
    assert list(point.get_xdata()) == [0.25] and list(point.get_ydata()) == [0.3]
    assert ax.get_xlabel() == "share of block parameters removed"


def test_without_a_known_depth_only_unstructured_lines_are_drawn(monkeypatch, tmp_path):
    ax = _figure(monkeypatch, tmp_path, {})
    assert not any("shortgpt" in name for name in ax.get_legend_handles_labels()[1])
    assert ax.get_xlabel() == "sparsity"
