"""What the masks stage can prune, known from a model's config.json before any job runs.

`problems(config, prune, where)` lists, one sentence each, why a variant's pruning settings
cannot give the sparsity they ask for on that model; empty when they can. The masks stage
calls it first, and the workflow's config check may call it with the same arguments.
`realised_problem` is the stage's last guard: a matrix whose realised sparsity is not its
target (beyond the rounding of whole weights) stops the stage before its table is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.prune.scores import parse_nm

STRUCTURED = ("shortgpt", "reverse", "dense")


def read_config(folder) -> dict:
    """config.json of a model folder, the text config of a multimodal one."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return config.get("text_config", config) if "num_hidden_layers" not in config else config


def input_widths(config: dict) -> dict[str, int]:
    """The input width (columns) of each kind of prunable matrix, from config.json (none when it
    does not say: the masks stage itself then checks each matrix)."""
    if not config.get("hidden_size"):
        return {}
    hidden = int(config["hidden_size"])
    heads = int(config.get("num_attention_heads", 1))
    head_dim = int(config.get("head_dim") or hidden // heads)
    widths = {"q/k/v (hidden_size)": hidden, "o_proj (num_attention_heads x head_dim)": heads * head_dim}
    if config.get("intermediate_size"):
        widths["dense MLP down_proj (intermediate_size)"] = int(config["intermediate_size"])
    if config.get("moe_intermediate_size"):
        widths["expert down_proj (moe_intermediate_size)"] = int(config["moe_intermediate_size"])
    return widths


def problems(config: dict, prune: dict, where: str = "pruning") -> list[str]:
    """Why `prune` ({method, sparsity, nm, ...}: a variant's pruning settings) cannot be applied
    to the model of `config` (its config.json as a dict); [] when it can. `where` names the
    config entry in the messages."""
    method = prune.get("method")
    if method in STRUCTURED:
        return []
    out = []
    quant = config.get("quantization_config")
    if quant:
        out.append(f"{where}: the model's weights are quantized ({quant.get('quant_method', 'unknown method')}); "
                   "unstructured pruning needs them dense: point the model at a bf16/fp32 (dequantized) checkpoint")
    sparsity = prune.get("sparsity")
    if sparsity is not None and not 0 <= float(sparsity) < 1:
        out.append(f"{where}: sparsity {sparsity} is outside [0, 1); 1 would zero every matrix: give a fraction below 1")
    nm = parse_nm(prune.get("nm"))
    if nm and not 0 < nm[0] < nm[1]:
        out.append(f"{where}: nm {nm[0]}:{nm[1]} must zero N of every M weights with 0 < N < M, e.g. '2:4'")
    elif nm:
        n, m = nm
        uneven = {k: w for k, w in input_widths(config).items() if w % m}
        if uneven:
            kinds = ", ".join(f"{k} = {w}" for k, w in uneven.items())
            out.append(f"{where}: nm {n}:{m} needs every matrix's input width divisible by {m}; {kinds} "
                       f"is not, so its sparsity could not be {n}/{m}: choose an M that divides them")
    return out


def realised_problem(row: dict) -> str | None:
    """Why a mask row's realised sparsity is not its target, or None. Allowed: the rounding of
    whole weights (less than one weight per row for per-row selection, one per column block
    for SparseGPT), not more."""
    target, achieved = float(row["target_sparsity"]), float(row["achieved_sparsity"])
    rows, cols = int(row["rows"]), int(row["cols"])
    if abs(achieved - target) <= 1.0 / cols + 1.0 / rows + 1e-9:
        return None
    return (f"block {row['block']} {row['name']} ({rows}x{cols}): realised sparsity {achieved:.4f}, target {target:.4f}. "
            "Zero input columns (SparseGPT zeroes their weights), weights that are already zero, or a target "
            "outside [0, 1) cause this; check the calibration data and the allocation's settings")
