"""What a variant spends: parameters, FLOPs per token and FLOPs per problem (docs/COMPUTE.md).

Two accountings of the same generation:
- dense hardware (`_dense_hw`): every stored weight is multiplied, zeros included, so an
  unstructured or N:M variant costs what dense costs; a removed block is not stored and saves
  its whole cost;
- ideal sparse (`_ideal_sparse`): only nonzero weights are multiplied (an N:M matrix at its
  structured rate, N/M of its weights).
Convention: 2 FLOPs per multiply-add. A token's linear FLOPs are 2 x the weights it multiplies
(attention and MLP matrices of the kept blocks, lm_head; an embedding lookup is free; a
mixture of experts' expert matrices at their active share, experts per token / experts).
Attention over the context adds 2 x 2 x layers x heads x head_dim FLOPs per context position
(scores and weighted values), the same in both accountings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("attention", "mlp", "experts", "embedding", "lm_head", "other")
ACCOUNTINGS = ("dense_hw", "ideal_sparse")
# the per-variant facts main.csv carries (per kind: params_<kind>, nonzero_params_<kind>)
VARIANT_COLUMNS = ["params", "nonzero_params", "blocks_kept", "flops_per_token_dense_hw",
                   "flops_per_token_ideal_sparse", "attention_flops_per_context_token", "checkpoint_bytes",
                   "generation_tokens_per_s"]
KIND_COLUMNS = [f"{prefix}{kind}" for kind in KINDS for prefix in ("params_", "nonzero_params_")]
CELL_COLUMNS = ["mean_prompt_tokens", "mean_generated_tokens", "flops_per_problem_dense_hw",
                "flops_per_problem_ideal_sparse"]


def matrix_kind(name: str, ndim: int = 2) -> str:
    """The kind of a checkpoint tensor from its name (`model.layers.3.self_attn.q_proj.weight`)
    and rank: vectors (norms, biases, sinks) are `other`."""
    if "embed_tokens" in name or name.endswith("wte.weight"):
        return "embedding"
    if "lm_head" in name:
        return "lm_head"
    if ndim < 2:
        return "other"
    if ".experts." in name:  # one tensor per expert, or all experts' in one (gpt-oss)
        return "experts"
    if "attn" in name or "attention" in name:
        return "attention"
    if "mlp" in name or "moe" in name or "feed_forward" in name or "ffn" in name:
        return "mlp"
    return "other"


def text_config(model_config: dict) -> dict:
    """The language model's part of a config (multimodal configs nest it)."""
    return model_config.get("text_config") or model_config


def attention_flops_per_position(model_config: dict) -> float:
    """FLOPs one token spends per earlier context position: 2 (FLOPs per multiply-add) x 2 (scores,
    weighted values) x layers x heads x head_dim. Grouped KV heads do not change it: every query
    head scores every position."""
    cfg = text_config(model_config)
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    return 4.0 * int(cfg["num_hidden_layers"]) * heads * head_dim


def count_weights(tensors, model_config: dict) -> dict:
    """Per kind, the stored and nonzero elements of `tensors` ((name, tensor or array) pairs).
    Without an lm_head tensor, a config with tied embeddings multiplies the embedding matrix as
    lm_head: it counts as lm_head too (`lm_head_tied`), stored once."""
    counts = {f"{prefix}{kind}": 0 for kind in KINDS for prefix in ("params_", "nonzero_params_")}
    for name, tensor in tensors:
        array = tensor if hasattr(tensor, "numel") else np.asarray(tensor)
        kind = matrix_kind(name, array.ndim)
        counts[f"params_{kind}"] += int(array.numel() if hasattr(array, "numel") else array.size)
        counts[f"nonzero_params_{kind}"] += int((array != 0).sum())
    counts["lm_head_tied"] = counts["params_lm_head"] == 0 and bool(
        text_config(model_config).get("tie_word_embeddings", model_config.get("tie_word_embeddings", False)))
    if counts["lm_head_tied"]:
        counts["params_lm_head"] = counts["params_embedding"]
        counts["nonzero_params_lm_head"] = counts["nonzero_params_embedding"]
    return counts


def variant_facts(counts: dict, model_config: dict) -> dict:
    """Totals and FLOPs per token from `count_weights`' counts and the checkpoint's config."""
    cfg = text_config(model_config)
    experts = cfg.get("num_local_experts") or cfg.get("num_experts")
    active = (cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or experts) / experts if experts else 1.0
    facts = dict(counts)
    stored = [kind for kind in KINDS if not (kind == "lm_head" and counts["lm_head_tied"])]
    for prefix, accounting in (("params_", "dense_hw"), ("nonzero_params_", "ideal_sparse")):
        multiplied = (counts[f"{prefix}attention"] + counts[f"{prefix}mlp"] + active * counts[f"{prefix}experts"]
                      + counts[f"{prefix}lm_head"])
        facts[f"flops_per_token_{accounting}"] = 2.0 * multiplied
        facts[f"lm_head_flops_{accounting}"] = 2.0 * counts[f"{prefix}lm_head"]
        facts[prefix.rstrip("_")] = sum(counts[f"{prefix}{kind}"] for kind in stored)
    facts["blocks_kept"] = int(cfg["num_hidden_layers"])
    facts["attention_flops_per_context_token"] = attention_flops_per_position(model_config)
    return facts


def checkpoint_facts(folder: str | Path) -> dict:
    """A model folder's facts: weight counts per kind, totals, FLOPs per token and the bytes of
    its weight files. Reads one tensor at a time."""
    from safetensors import safe_open

    folder = Path(folder)
    model_config = json.loads((folder / "config.json").read_text())
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors weights to count")

    def tensors():
        for path in files:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    yield name, handle.get_tensor(name)

    facts = variant_facts(count_weights(tensors(), model_config), model_config)
    facts["checkpoint_bytes"] = int(sum(p.stat().st_size for p in files))
    return facts


# --------------------------------------------------------------------------- per sequence and problem


def sequence_flops(facts: dict, prompt_tokens, generated_tokens, accounting: str):
    """FLOPs of sequences with `prompt_tokens` prompt and `generated_tokens` generated tokens
    (arrays or numbers): every position passes the kept blocks once (the prompt once per
    sequence, generated tokens with the KV cache), lm_head runs once per generated token, and
    the token at position t (1-based) attends to t positions."""
    prompt = np.asarray(prompt_tokens, dtype=float)
    generated = np.asarray(generated_tokens, dtype=float)
    positions = prompt + generated
    per_token = facts[f"flops_per_token_{accounting}"]
    lm_head = facts[f"lm_head_flops_{accounting}"]
    attention = facts["attention_flops_per_context_token"]
    return (per_token - lm_head) * positions + lm_head * generated + attention * positions * (positions + 1) / 2


def cost_of(cell: pd.DataFrame, facts: dict | None) -> dict:
    """A cell's compute per problem: mean prompt and generated tokens per sequence, and per
    accounting the mean over (problem, seed) of the summed FLOPs of its samples (k samples
    cost k sequences). FLOPs are empty without the variant's facts or the prompt lengths."""
    row = {column: np.nan for column in CELL_COLUMNS}
    generated = cell["thinking_tokens"].astype(float) + cell["answer_tokens"].astype(float)
    row["mean_generated_tokens"] = float(generated.mean())
    if "prompt_tokens" not in cell or cell["prompt_tokens"].isna().any():
        return row
    row["mean_prompt_tokens"] = float(cell["prompt_tokens"].astype(float).mean())
    if not (facts or {}).get("flops_per_token_dense_hw"):
        return row
    for accounting in ACCOUNTINGS:
        flops = sequence_flops(facts, cell["prompt_tokens"], generated, accounting)
        per_problem = pd.Series(flops, index=cell.index).groupby([cell["problem_id"], cell["seed"]]).sum()
        row[f"flops_per_problem_{accounting}"] = float(per_problem.mean())
    return row


def combine(records: list[dict]) -> dict:
    """One variant's facts from its generation jobs' records: the weights' facts (the same in
    every job) and the throughput over all of them (tokens / seconds of generation)."""
    records = [r for r in records if r]
    if not records:
        return {}
    facts = {k: v for k, v in records[0].items() if k not in ("generated_tokens", "generation_seconds")}
    tokens = sum(r.get("generated_tokens") or 0 for r in records)
    seconds = sum(r.get("generation_seconds") or 0 for r in records)
    facts["generation_tokens_per_s"] = tokens / seconds if seconds > 0 else np.nan
    return facts
