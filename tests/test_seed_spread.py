"""The training seed is a dimension of the demo's results: a family of trained demo models that
differ only in their seed, and the spread of each cell across it."""

from __future__ import annotations

import copy

import pandas as pd

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline.reporting import tables
from tests.workflow_util import ROOT


def _seeds_config(monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo's files are relative to the workflow's folder
    return cfg.workflow_config(cfg._merge(cfg.load_yaml(ROOT / "config" / "demo.yaml"),
                                          cfg.load_yaml(ROOT / "config" / "demo-seeds.yaml")),
                               ["config/demo.yaml", "config/demo-seeds.yaml"])


def test_models_that_differ_only_in_their_training_seed_form_a_family(monkeypatch):
    config = _seeds_config(monkeypatch)
    seeds = slices.training_seeds(config)
    assert {m: s["family"] for m, s in seeds.items()} == dict.fromkeys(config["models"], "chain-qwen3")
    assert sorted(s["seed"] for s in seeds.values()) == [0, 1, 2]
    # seed 0 is the shipped model; the others are trained (rule train_demo)
    assert [slices.trains_demo(config, m) for m in config["models"]] == [False, True, True]
    other = copy.deepcopy(config)
    other["models"]["chain-qwen3-seed2"]["demo"]["train"]["steps"] += 1
    assert slices.training_seeds(other)["chain-qwen3-seed2"]["family"] == "chain-qwen3-seed2"


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


def _three_seeds():
    """Three training seeds of one family, two budgets, three variants: wanda-20 stays ahead of
    wanda-50 for every seed, while shortgpt-1 and wanda-50 trade places."""
    spec = {"training": {m: {"family": "a", "seed": s} for m, s in (("a", 0), ("b", 1), ("c", 2))},
            "benchmarks": ["x"], "budgets": [8, 64], "wait_times": [0, 1],
            "variants": {"dense": {"method": "dense"}, "wanda-20": {"method": "wanda", "sparsity": 0.2},
                         "wanda-50": {"method": "wanda", "sparsity": 0.5},
                         "shortgpt-1": {"method": "shortgpt", "layers": 1}}}
    at_64 = {"a": {"dense": 1.0, "wanda-20": 0.9, "wanda-50": 0.4, "shortgpt-1": 0.1},
             "b": {"dense": 0.9, "wanda-20": 0.9, "wanda-50": 0.3, "shortgpt-1": 0.6},
             "c": {"dense": 1.0, "wanda-20": 0.8, "wanda-50": 0.5, "shortgpt-1": 0.5}}
    rows = [{"model": m, "variant": v, "benchmark": "x", "budget": b, "wait_times": w, "status": "ok",
             "method": spec["variants"][v]["method"], "accuracy": acc if b == 64 and w == 0 else acc / 2}
            for m, accs in at_64.items() for v, acc in accs.items() for b in (8, 64) for w in (0, 1)]
    return pd.DataFrame(rows), spec


def test_orderings_that_hold_for_every_seed_and_those_that_flip():
    table, spec = _three_seeds()
    orderings = tables.seed_orderings(table, spec).set_index(["first", "second"])
    assert len(orderings) == 6 and set(orderings["budget"]) == {64} and set(orderings["wait_times"]) == {0}
    assert orderings.loc[("wanda-20", "wanda-50"), "order"] == "wanda-20 ahead"
    assert orderings.loc[("wanda-20", "wanda-50"), "differences"] == "+0.500 +0.600 +0.300"
    assert orderings.loc[("wanda-50", "shortgpt-1"), "order"] == "flips"  # +0.3, -0.3, 0
    # dense ties wanda-20 for seed 1: no order there, so not a finding
    assert orderings.loc[("dense", "wanda-20"), "order"] == "flips"
    assert orderings.loc[("dense", "shortgpt-1"), "order"] == "dense ahead"


def test_spread_tables_and_plot_are_written(tmp_path):
    from pipeline.reporting import plots

    table, spec = _three_seeds()
    written = tables.write_seed_spread(table, spec, tmp_path)
    assert [p.name for p in written] == list(tables.SEED_SPREAD)
    markdown = (tmp_path / "training_seeds.md").read_text()
    assert "orderings that flip between training seeds (2 of 6 pairs" in markdown
    assert "| wanda-50 | shortgpt-1 | +0.300 -0.300 +0.000 |" in markdown
    assert tables.seed_families(spec["training"]) == {"a": ["a", "b", "c"]}
    assert tables.seed_families({"a": {"family": "a", "seed": 0}}) == {}  # one seed: no spread
    plots.training_seed_spread(table, "a", spec, tmp_path)
    svg = (tmp_path / "training_seeds-a.svg").read_text()
    for label in ("training seed 0", "training seed 2", "wanda-50", "mean and range over seeds"):
        assert label in svg
    assert (tmp_path / "training_seeds-a.png").stat().st_size > 10_000


def test_seeds_config_trains_two_models_and_prunes_each_like_the_demo(tmp_path):
    """What `snakemake all --configfile config/demo.yaml config/demo-seeds.yaml` schedules in an
    empty folder: two trainings (seed 0 is the shipped model), every demo job three times, and
    the spread's tables and figure."""
    from tests.workflow_util import copy_workflow, scheduled_jobs, snakemake

    workdir = copy_workflow(tmp_path)
    demo = scheduled_jobs(snakemake(workdir, "-n", "--configfile", "config/demo.yaml").stdout)
    result = snakemake(workdir, "-n", "--configfile", "config/demo.yaml", "config/demo-seeds.yaml")
    seeds = scheduled_jobs(result.stdout)
    assert "train_demo" not in demo and seeds["train_demo"] == 2
    for rule in ("masks", "export", "generate", "grade", "perplexity", "base_model"):
        assert seeds[rule] == 3 * demo[rule], rule
    for name in ("training_seeds-chain-qwen3.png", "training_seeds-chain-qwen3.svg", "training_seed_orderings.csv"):
        assert name in result.stdout
