"""Allocations that give a block a sparsity outside [0, 1) are refused with the keys to change,
before any masks job: never a kthvalue traceback. The case: Wanda at 70% with AlphaPruning's
allocation (eps 0.3, the reference's default) on SmolLM2-135M-Instruct, whose alphas
(tests/fixtures/smollm2_alphas.csv: pipeline.prune.stats.alphas of the converted GGUF model)
give block 10 a sparsity of 1.019."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline import preflight
from pipeline.core.artifacts import write_table
from pipeline.prune import allocation
from tests.workflow_util import ROOT

ALPHAS = ROOT / "tests" / "fixtures" / "smollm2_alphas.csv"
WANDA_70 = {"method": "wanda", "sparsity": 0.7, "allocation": "alphapruning", "alphapruning": {"eps": 0.3}}


def smollm2_alphas() -> pd.DataFrame:
    return pd.read_csv(ALPHAS)


def test_the_issue_case_is_refused_with_the_keys_and_how_far_they_may_go():
    alphas = smollm2_alphas()
    assert len(alphas) == 210 and alphas.block.nunique() == 30
    line = allocation.alphapruning_problem(alphas, "wanda-70-alpha", WANDA_70)
    assert line.startswith("variants.wanda-70-alpha:") and "outside [0, 1)" in line
    assert "variants.wanda-70-alpha.alphapruning.eps below" in line and "variants.wanda-70-alpha.sparsity below" in line
    # the bounds it names are the real ones: just below each, every block is inside [0, 1)
    eps = float(line.split("alphapruning.eps below ")[1].split()[0])
    sparsity = float(line.split(".sparsity below ")[1].split()[0].rstrip(","))
    assert 0 < eps < 0.3 and 0.5 < sparsity < 0.7
    assert allocation.alphapruning_blocks(alphas, 0.7, eps - 0.001).sparsity.max() < 1
    assert allocation.alphapruning_blocks(alphas, 0.7, eps + 0.002).sparsity.max() >= 1
    assert allocation.alphapruning_blocks(alphas, sparsity - 0.001, 0.3).sparsity.max() < 1
    # Wanda at 50% with the same eps stays inside
    assert allocation.alphapruning_problem(alphas, "w", {**WANDA_70, "sparsity": 0.5}) is None


def test_owl_below_zero_without_the_clamp_is_refused():
    ratios = np.array([1.0, 5.0, 9.0, 2.0])
    prune = {"method": "magnitude", "sparsity": 0.1, "allocation": "owl", "owl": {"lambda": 0.2, "M": 7}}
    per_block = allocation.owl_block_sparsity(ratios, 0.1, 0.2, None)
    assert per_block.min() < 0
    line = allocation.range_problem(per_block, "mag-owl", prune)
    assert line.startswith("variants.mag-owl:")
    assert "lower variants.mag-owl.owl.lambda, or raise variants.mag-owl.sparsity" in line


def test_layerif_groups_clipped_at_one_are_refused():
    scores = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    params = np.ones((4, 2))
    prune = {"method": "wanda", "sparsity": 0.6, "allocation": "layerif", "layerif": {"e1": 0.05, "e2": 0.4}}
    groups = allocation.layerif_group_sparsity(scores, params, 0.6, 0.05, 0.4)
    assert groups.max() == 1.0
    line = allocation.range_problem(groups, "w-lif", prune)
    assert "of 8 block groups" in line and "variants.w-lif.layerif.e2" in line


def _alphapruning_config(tmp_path):
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["variants"] = {"wanda-70-alpha": WANDA_70, "dense": {"method": "dense"}}
    config = cfg.prepare(config)
    stats = tmp_path / "results" / "stats" / "tiny-qwen3" / "alphas.parquet"
    write_table(smollm2_alphas(), stats, {"kind": "alphas"})
    return config


def test_the_preflight_refuses_it_once_the_alphas_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _alphapruning_config(tmp_path)
    jobs = [("allocation", {"model": "tiny-qwen3", "variant": "wanda-70-alpha"}),
            ("masks", {"model": "tiny-qwen3", "variant": "wanda-70-alpha"})]
    [line] = preflight.problems(config, jobs)
    assert line.startswith("variants.wanda-70-alpha:") and "alphapruning.eps" in line
    (tmp_path / "results" / "stats" / "tiny-qwen3" / "alphas.parquet").unlink()
    assert preflight.problems(config, jobs) == []  # not known yet: rule allocation checks it


def test_the_allocation_stage_refuses_before_writing(tmp_path, capsys):
    from pipeline.stages import allocation as stage

    config = _alphapruning_config(tmp_path)
    spec = slices.mask_slice(config, "tiny-qwen3", "wanda-70-alpha")
    alphas = tmp_path / "results" / "stats" / "tiny-qwen3" / "alphas.parquet"
    out = tmp_path / "allocation.parquet"
    with pytest.raises(SystemExit) as stopped:
        stage.main(["--alphas", str(alphas), "--spec", json.dumps(spec), "--out", str(out)])
    assert stopped.value.code == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "variants.wanda-70-alpha:" in err and "Traceback" not in err and "kthvalue" not in err
    spec["prune"]["sparsity"] = 0.5
    stage.main(["--alphas", str(alphas), "--spec", json.dumps(spec), "--out", str(out)])
    table = pd.read_parquet(out)
    assert len(table) == 30 and table.sparsity.max() < 1
    assert abs(np.average(table.sparsity, weights=table.params) - 0.5) < 1e-12


def test_the_masks_stage_refuses_an_owl_allocation_before_pruning(tiny_model):
    """OWL's allocation needs the weights, so the masks job itself checks it, before the first block is pruned."""
    from pipeline.models.models import load_model
    from pipeline.stages import masks

    model = load_model(tiny_model)
    before = [p.detach().clone() for p in model.parameters()]
    spec = {"variant": "mag-owl", "prune": {"method": "magnitude", "sparsity": 0.05, "allocation": "owl",
                                            "owl": {"lambda": 0.5, "M": 2}}}
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, 500, 16).tolist() for _ in range(2)]
    with pytest.raises(cfg.ConfigError) as refused:
        list(masks.compute_frames(model, spec, samples))
    assert refused.value.problems[0].startswith("variants.mag-owl:")
    assert all(torch_equal(a, b) for a, b in zip(before, model.parameters()))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b.detach()))


def test_the_preflight_refuses_a_layerif_allocation_from_its_scores_file(tmp_path, monkeypatch):
    from pipeline.prune.allocation import write_layerif_scores

    monkeypatch.chdir(tmp_path)
    scores = write_layerif_scores(np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]), tmp_path / "scores.csv")
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["variants"] = {"w-lif": {"method": "wanda", "sparsity": 0.6, "allocation": "layerif",
                                    "layerif": {"scores": str(scores)}}}
    config = cfg.prepare(config)
    jobs = [("masks", {"model": "tiny-qwen3", "variant": "w-lif"})]
    [line] = preflight.problems(config, jobs)
    assert line.startswith("variants.w-lif:") and "variants.w-lif.layerif.e2 below" in line
    e2 = float(line.split("layerif.e2 below ")[1].split()[0])
    config["variants"]["w-lif"]["layerif"]["e2"] = e2 - 0.001
    assert preflight.problems(config, jobs) == []
