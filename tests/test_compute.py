"""Compute accounting against hand counts on a tiny model, and pruned-vs-dense at equal compute on
constructed curves (pipeline.reporting.compute, pipeline.reporting.equal_compute)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core.artifacts import write_table
from pipeline.models.demo_model import build_tokenizer, make_model
from pipeline.prune.structured import remove_blocks
from pipeline.reporting import compute, equal_compute
from pipeline.stages import aggregate

# Qwen3: q, o: heads*head_dim x hidden; k, v: kv_heads*head_dim x hidden; gate, up, down: hidden x inter
SHAPE = {"layers": 3, "hidden": 16, "heads": 2, "kv_heads": 1, "intermediate": 24, "vocab": 300, "seed": 0}
H, HEADS, KV, D, I, L = 16, 2, 1, 8, 24, 3
ATTENTION = 2 * HEADS * D * H + 2 * KV * D * H  # weights per block
MLP = 3 * H * I


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(SHAPE["vocab"], 0)


def saved(tmp_path, tokenizer, name, prune=None):
    model = make_model(SHAPE, tokenizer)
    if prune:
        prune(model)
    folder = tmp_path / name
    model.save_pretrained(folder, safe_serialization=True)
    return folder, len(tokenizer)


def _linears(model):
    for layer in model.model.layers:
        for module in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                       layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            yield module.weight


def half_unstructured(model):
    with torch.no_grad():
        for weight in _linears(model):
            flat = weight.view(-1)
            flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[: flat.numel() // 2]] = 0


def two_of_four(model):
    with torch.no_grad():
        for weight in _linears(model):
            groups = weight.view(weight.shape[0], -1, 4)
            groups[..., 1] = 0
            groups[..., 3] = 0


def test_dense_counts_and_flops_by_hand(tmp_path, tokenizer):
    folder, vocab = saved(tmp_path, tokenizer, "dense")
    facts = compute.checkpoint_facts(folder)
    assert facts["params_attention"] == L * ATTENTION
    assert facts["params_mlp"] == L * MLP
    assert facts["params_lm_head"] == facts["params_embedding"] == vocab * H
    multiplied = L * (ATTENTION + MLP) + vocab * H
    assert facts["flops_per_token_dense_hw"] == facts["flops_per_token_ideal_sparse"] == 2 * multiplied
    assert facts["attention_flops_per_context_token"] == 4 * L * HEADS * D
    assert facts["blocks_kept"] == L
    # norms (q_norm, k_norm, layer norms, final norm) are stored but not multiplied
    norms = L * (2 * D + 2 * H) + H
    assert facts["params"] == multiplied + vocab * H + norms
    assert facts["checkpoint_bytes"] == (folder / "model.safetensors").stat().st_size


@pytest.mark.parametrize("prune", [half_unstructured, two_of_four], ids=["unstructured-50", "2of4"])
def test_zeros_are_paid_on_dense_hardware_and_free_when_ideal(tmp_path, tokenizer, prune):
    folder, vocab = saved(tmp_path, tokenizer, prune.__name__, prune)
    facts = compute.checkpoint_facts(folder)
    pruned = L * (ATTENTION + MLP)
    assert facts["params_attention"] + facts["params_mlp"] == pruned
    assert facts["nonzero_params_attention"] + facts["nonzero_params_mlp"] == pruned // 2
    assert facts["flops_per_token_dense_hw"] == 2 * (pruned + vocab * H)
    assert facts["flops_per_token_ideal_sparse"] == 2 * (pruned // 2 + vocab * H)
    # outside the pruned matrices only the embedding's padding row is zero
    outside = facts["params"] - pruned
    padding = facts["params_embedding"] - facts["nonzero_params_embedding"]
    assert facts["nonzero_params"] == pruned // 2 + outside - padding


def test_a_removed_block_saves_its_cost_in_both_accountings(tmp_path, tokenizer):
    folder, vocab = saved(tmp_path, tokenizer, "shortgpt", lambda m: remove_blocks(m, [1]))
    facts = compute.checkpoint_facts(folder)
    assert facts["blocks_kept"] == L - 1
    expected = 2 * ((L - 1) * (ATTENTION + MLP) + vocab * H)
    assert facts["flops_per_token_dense_hw"] == facts["flops_per_token_ideal_sparse"] == expected
    assert facts["attention_flops_per_context_token"] == 4 * (L - 1) * HEADS * D


def test_tied_lm_head_is_multiplied_but_stored_once():
    tensors = [("model.embed_tokens.weight", np.ones((10, 4))), ("model.layers.0.mlp.up_proj.weight", np.ones((6, 4)))]
    cfg = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 4, "tie_word_embeddings": True}
    facts = compute.variant_facts(compute.count_weights(tensors, cfg), cfg)
    assert facts["params"] == 64
    assert facts["flops_per_token_dense_hw"] == 2 * (24 + 40)


def test_sequence_flops_by_hand():
    facts = {"flops_per_token_dense_hw": 100.0, "lm_head_flops_dense_hw": 30.0,
             "attention_flops_per_context_token": 2.0}
    # 3 prompt tokens, 2 generated: 5 positions through the blocks (70 each), lm_head for the 2
    # generated tokens, attention 2 * (1 + 2 + 3 + 4 + 5)
    assert compute.sequence_flops(facts, 3, 2, "dense_hw") == 5 * 70 + 2 * 30 + 2 * 15


def test_cell_cost_sums_a_problems_samples():
    facts = {"flops_per_token_ideal_sparse": 10.0, "lm_head_flops_ideal_sparse": 0.0,
             "flops_per_token_dense_hw": 20.0, "lm_head_flops_dense_hw": 0.0, "attention_flops_per_context_token": 0.0}
    cell = pd.DataFrame({"problem_id": ["a", "a", "b", "b"], "seed": 1, "prompt_tokens": [4, 4, 2, 2],
                         "thinking_tokens": [3, 5, 1, 1], "answer_tokens": [1, 1, 1, 1]})
    cost = compute.cost_of(cell, facts)
    # problem a: two samples of 8 and 10 positions; b: two of 4
    assert cost["flops_per_problem_ideal_sparse"] == pytest.approx(10 * (18 + 8) / 2)
    assert cost["flops_per_problem_dense_hw"] == pytest.approx(2 * cost["flops_per_problem_ideal_sparse"])
    assert cost["mean_prompt_tokens"] == 3 and cost["mean_generated_tokens"] == 3.5
    # a job that could not count its weights records only its throughput: no FLOPs, no error
    unknown = compute.cost_of(cell, {"generated_tokens": 10, "generation_seconds": 1.0})
    assert np.isnan(unknown["flops_per_problem_dense_hw"]) and unknown["mean_prompt_tokens"] == 3


# --------------------------------------------------------------------------- interpolation


def test_interpolation_is_linear_in_log_compute_and_refuses_to_extrapolate():
    x, y = np.array([10.0, 100.0, 1000.0]), np.array([0.2, 0.4, 0.8])
    assert equal_compute.interpolate(x, y, 100.0) == pytest.approx(0.4)
    assert equal_compute.interpolate(x, y, 10 ** 1.5) == pytest.approx(0.3)
    assert equal_compute.interpolate(x, y, 10 ** 2.25) == pytest.approx(0.5)
    assert equal_compute.interpolate(x, y, 10.0) == pytest.approx(0.2)
    assert equal_compute.interpolate(x, y, 1000.0) == pytest.approx(0.8)
    assert equal_compute.interpolate(x, y, 9.99) == "below"
    assert equal_compute.interpolate(x, y, 1000.01) == "above"


SPEC = {"models": ["m"], "benchmarks": ["b"], "budgets": [1, 2, 3], "seeds": [0], "bootstrap": 2000, "confidence": 0.95,
        "variants": {"dense": {"method": "dense"}, "cheap": {"method": "wanda", "sparsity": 0.5}}}


def constructed(dense_flops, dense_acc, cheap_flops, cheap_acc, problems=200):
    """Grades whose accuracies are exactly the given ones, and a main table with the given compute."""
    rows, table = [], []
    for variant, flops, accs in (("dense", dense_flops, dense_acc), ("cheap", cheap_flops, cheap_acc)):
        for budget, f, acc in zip(SPEC["budgets"], flops, accs):
            right = round(acc * problems)
            rows += [{"model": "m", "variant": variant, "benchmark": "b", "budget": budget, "wait_times": 0,
                      "problem_id": str(p), "seed": 0, "correct": p < right} for p in range(problems)]
            table.append({"model": "m", "variant": variant, "method": SPEC["variants"][variant]["method"],
                          "sparsity": SPEC["variants"][variant].get("sparsity"), "benchmark": "b", "budget": budget,
                          "wait_times": 0, "status": "ok", "accuracy": right / problems,
                          "flops_per_problem_dense_hw": f, "flops_per_problem_ideal_sparse": f})
    return pd.DataFrame(rows), pd.DataFrame(table)


def test_equal_compute_table_reads_dense_between_its_budgets():
    grades, table = constructed([10, 100, 1000], [0.2, 0.4, 0.6], [5, 10 ** 1.5, 5000], [0.9, 0.9, 0.9])
    rows = equal_compute.equal_compute(grades, table, SPEC, "m")
    rows = rows[rows["accounting"] == "dense_hw"].set_index("budget")
    assert rows.loc[1, "verdict"].startswith("no overlap: cheaper")
    assert rows.loc[3, "verdict"].startswith("no overlap: costlier")
    assert pd.isna(rows.loc[1, "difference"]) and pd.isna(rows.loc[3, "difference"])
    assert rows.loc[2, "dense_accuracy_at_equal_compute"] == pytest.approx(0.3)
    assert rows.loc[2, "difference"] == pytest.approx(0.6)
    assert rows.loc[2, "difference_ci_low"] > 0 and rows.loc[2, "verdict"] == "pruned ahead at equal compute"
    assert rows.loc[2, "dense_budgets_between"] == "1-2"


def test_equal_compute_says_when_dense_is_ahead_or_it_is_unclear():
    grades, table = constructed([10, 100, 1000], [0.5, 0.5, 0.5], [10, 100, 1000], [0.1, 0.5, 0.5])
    rows = equal_compute.equal_compute(grades, table, SPEC, "m")
    rows = rows[rows["accounting"] == "ideal_sparse"].set_index("budget")
    assert rows.loc[1, "verdict"] == "dense ahead at equal compute"
    assert rows.loc[2, "difference"] == 0 and rows.loc[2, "verdict"] == "no clear difference"
    text = equal_compute.markdown(equal_compute.equal_compute(grades, table, SPEC, "m"), "m", SPEC)
    assert "dense ahead at equal compute" in text and "ideal sparse accounting" in text


def test_curves_that_do_not_overlap_get_no_number():
    grades, table = constructed([100, 200, 400], [0.2, 0.4, 0.6], [10, 20, 40], [0.3, 0.3, 0.3])
    rows = equal_compute.equal_compute(grades, table, SPEC, "m")
    assert rows["difference"].isna().all()
    assert rows["verdict"].str.startswith("no overlap").all()


# --------------------------------------------------------------------------- the main table's columns


def test_main_table_carries_the_variants_facts_and_each_cells_cost(tmp_path):
    facts = {"params": 1000, "nonzero_params": 600, "blocks_kept": 2, "flops_per_token_dense_hw": 100.0,
             "flops_per_token_ideal_sparse": 60.0, "lm_head_flops_dense_hw": 0.0, "lm_head_flops_ideal_sparse": 0.0,
             "attention_flops_per_context_token": 0.0, "checkpoint_bytes": 4000}
    grades = []
    for variant in ("dense", "cheap"):
        for budget in SPEC["budgets"]:
            grades += [{"model": "m", "variant": variant, "benchmark": "b", "problem_id": str(p), "seed": 0,
                        "sample": s, "sample_seed": 0, "budget": budget, "wait_times": 0, "gold": "1",
                        "extracted": "1", "rule": "boxed", "status": "correct", "correct": True,
                        "prompt_tokens": 5, "thinking_tokens": budget, "answer_tokens": 1, "hit_budget": True}
                       for p in range(3) for s in range(2)]
    grades = pd.DataFrame(grades)
    paths = []
    for variant, seconds in (("dense", 2.0), ("cheap", 0.0)):
        path = tmp_path / f"{variant}.parquet"
        record = {**facts, "generated_tokens": 10, "generation_seconds": seconds}
        write_table(grades[grades["variant"] == variant], path, compute=record)
        paths.append(str(path))
    table = aggregate.main_table(grades, SPEC, facts=aggregate.read_facts(paths))
    row = table[(table["variant"] == "cheap") & (table["budget"] == 2)].iloc[0]
    assert row["nonzero_params"] == 600 and row["checkpoint_bytes"] == 4000
    # two samples of 5 + 2 + 1 positions per problem
    assert row["flops_per_problem_ideal_sparse"] == 2 * 8 * 60
    assert row["flops_per_problem_dense_hw"] == 2 * 8 * 100
    assert row["mean_prompt_tokens"] == 5 and row["mean_generated_tokens"] == 3
    dense = table[table["variant"] == "dense"].iloc[0]
    assert dense["generation_tokens_per_s"] == 5 and np.isnan(row["generation_tokens_per_s"])
    text = equal_compute.per_token(table, "m", SPEC)
    assert "| dense | 1,000 | 600 | 2 | 100 | 60 | 0 | 4,000 | 5.0 |" in text
    assert any(line.startswith("| wanda 50% |") and line.endswith("| - |") for line in text)
    from pipeline.reporting.plots import accuracy_vs_compute

    accuracy_vs_compute(table, "m", SPEC, tmp_path)
    assert (tmp_path / "accuracy_vs_compute-m.png").stat().st_size > 0
    assert "b: ideal sparse" in (tmp_path / "accuracy_vs_compute-m.svg").read_text()


@pytest.mark.parametrize("architecture", ["qwen3_moe", "mixtral", "gpt_oss", "phi3"])
def test_every_matrix_of_other_architectures_is_counted_as_multiplied(tmp_path, architecture):
    """Only vectors (norms, biases) fall outside the multiplied kinds; experts count at their
    active share (2 of 4 experts per token in these models)."""
    from safetensors import safe_open

    from tests.tiny_models import build

    folder = build(tmp_path / architecture, architecture)
    facts = compute.checkpoint_facts(folder)
    vectors = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            shapes = [handle.get_slice(name).get_shape() for name in handle.keys()]
            vectors += sum(int(np.prod(shape)) for shape in shapes if len(shape) < 2)
    assert facts["params_other"] == vectors
    moe = architecture != "phi3"
    assert (facts["params_experts"] > 0) == moe
    multiplied = (facts["params_attention"] + facts["params_mlp"] + facts["params_experts"] / (2 if moe else 1)
                  + facts["params_lm_head"])
    assert facts["flops_per_token_dense_hw"] == pytest.approx(2 * multiplied)
