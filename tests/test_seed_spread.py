"""The training seed is a dimension of the demo's results: a family of trained demo models that
differ only in their seed, and the spread of each cell across it."""

from __future__ import annotations

import copy

import pandas as pd

from pipeline.core import config as cfg
from pipeline.reporting import tables
from tests.workflow_util import ROOT


def _seeds_config(monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo's files are relative to the workflow's folder
    return cfg.workflow_config(cfg._merge(cfg.load_yaml(ROOT / "config" / "demo.yaml"),
                                          cfg.load_yaml(ROOT / "config" / "demo-seeds.yaml")),
                               ["config/demo.yaml", "config/demo-seeds.yaml"])


def test_models_that_differ_only_in_their_training_seed_form_a_family(monkeypatch):
    config = _seeds_config(monkeypatch)
    seeds = cfg.training_seeds(config)
    assert {m: s["family"] for m, s in seeds.items()} == dict.fromkeys(config["models"], "chain-qwen3")
    assert sorted(s["seed"] for s in seeds.values()) == [0, 1, 2]
    # seed 0 is the shipped model; the others are trained (rule train_demo)
    assert [cfg.trains_demo(config, m) for m in config["models"]] == [False, True, True]
    other = copy.deepcopy(config)
    other["models"]["chain-qwen3-seed2"]["demo"]["train"]["steps"] += 1
    assert cfg.training_seeds(other)["chain-qwen3-seed2"]["family"] == "chain-qwen3-seed2"


def test_spread_is_mean_min_and_max_across_training_seeds():
    spec = {"training": {"a": {"family": "a", "seed": 0}, "b": {"family": "a", "seed": 1},
                         "c": {"family": "a", "seed": 2}}}
    rows = [{"model": m, "variant": "dense", "benchmark": "x", "budget": 64, "wait_times": 0, "status": "ok",
             "accuracy": acc, "pass@4": 1.0, "perplexity": ppl} for m, acc, ppl in
            (("a", 0.9, 1.2), ("b", 0.5, 1.5), ("c", 0.7, 1.3))]
    rows.append({**rows[0], "model": "c", "variant": "wanda-50", "status": "missing", "accuracy": None})
    spread = tables.seed_spread(pd.DataFrame(rows), spec)
    assert len(spread) == 1
    row = spread.iloc[0]
    assert (row["family"], row["training_seeds"]) == ("a", "0 1 2")
    assert (row["accuracy_min"], row["accuracy_max"]) == (0.5, 0.9) and abs(row["accuracy_mean"] - 0.7) < 1e-12
    assert (row["perplexity_min"], row["perplexity_max"]) == (1.2, 1.5)
