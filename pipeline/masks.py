"""Stage: compute a variant's pruning masks (or the blocks it removes).

    python -m pipeline.masks --model results/models/M/model.json [--calibration CAL.parquet]
        [--stats results/stats/M/KIND.parquet ...] --spec JSON --out results/masks/M/V.parquet

`spec` is pipeline.config.mask_slice(): {model, dtype, variant, prune: {method, sparsity, nm,
allocation, owl|alphapruning|layerif, layers}, device}. Unstructured methods write one row per
matrix (docs/ARCHITECTURE.md: block, name, rows, cols, target/achieved sparsity, packed
`zeroed` mask, SparseGPT's updated `values`, the allocation's inputs); shortgpt and reverse one
row per block (block, score, removed). Statistics shared by variants (pipeline.stats) are read
from --stats when given and computed here otherwise. Statistics are fp32 whatever the dtype.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch

from pipeline import stats as model_stats
from pipeline.artifacts import read_provenance, read_table, spec_argument, write_table
from pipeline.calibration import read_calibration
from pipeline.models import decoder_layers, load_model, resolve_device
from pipeline.prune import driver, scores, structured
from pipeline.prune.sparsegpt import inverse_hessian, sparsegpt

# OWL's reference floor for non-positive block sparsities (Wanda and SparseGPT only)
OWL_CLAMP = 0.01


def allocation_module():
    # looked up at call time: allocation and influence are optional until a variant needs them
    from pipeline.prune import allocation

    return allocation


# --------------------------------------------------------------------------- allocation


def _group(name: str) -> int:
    """LayerIF group of a linear: 0 attention, 1 MLP."""
    return 0 if "attn" in name else 1


def targets(model, prune: dict, stats: dict, samples, device) -> tuple[dict, dict]:
    """Target sparsity per (block, linear name), and the allocation's input per matrix
    ({(block, name): {column: value}})."""
    layers = decoder_layers(model)
    names = [[n for n, _ in driver.linears(block)] for block in layers]
    sparsity = prune.get("sparsity")
    if sparsity is None:  # N:M
        n, m = scores.parse_nm(prune["nm"])
        sparsity = n / m
    allocation = prune.get("allocation", "uniform")
    per_block = np.full(len(layers), float(sparsity))
    extras: dict = {}
    if allocation == "owl":
        alloc, opts = allocation_module(), prune["owl"]
        r = stats.get("activations") or model_stats.dense_activations(model, samples, device)
        ratios = []
        for b, block in enumerate(layers):
            A = torch.cat([scores.wanda_scores(m.weight, r[(b, n)]).flatten() for n, m in driver.linears(block)])
            ratios.append(alloc.outlier_ratio(A, opts["M"]))
            extras.update({(b, n): {"outlier_ratio": ratios[-1]} for n in names[b]})
        clamp = OWL_CLAMP if prune["method"] in ("wanda", "sparsegpt") else None
        per_block = alloc.owl_block_sparsity(np.array(ratios), sparsity, opts["lambda"], clamp)
    elif allocation == "alphapruning":
        alloc = allocation_module()
        table = stats.get("alphas")
        if table is None:
            table = model_stats.alphas(model)
        alpha = {(int(r.block), r.name): float(r.alpha) for r in table.itertuples()}
        block_alpha = [np.mean([alpha[(b, n)] for n in names[b]]) for b in range(len(layers))]
        block_params = [sum(m.weight.numel() for _, m in driver.linears(block)) for block in layers]
        per_block = alloc.alphapruning_block_sparsity(np.array(block_alpha), np.array(block_params), sparsity, prune["alphapruning"]["eps"])
        extras = {(b, n): {"alpha": alpha[(b, n)]} for b in range(len(layers)) for n in names[b]}
    elif allocation == "layerif":
        alloc, opts = allocation_module(), prune["layerif"]
        if opts.get("scores"):
            influence = alloc.read_layerif_scores(opts["scores"])
        elif "layerif" in stats:
            influence = stats["layerif"]
        else:
            influence = model_stats.layerif_scores(model, samples)
        if influence.shape[0] != len(layers):
            raise ValueError(f"LayerIF scores cover {influence.shape[0]} blocks; the model has {len(layers)}")
        params = np.zeros((len(layers), 2))
        for b, block in enumerate(layers):
            for n, m in driver.linears(block):
                params[b, _group(n)] += m.weight.numel()
        groups = alloc.layerif_group_sparsity(influence, params, sparsity, opts["e1"], opts["e2"], opts["direction"])
        out = {(b, n): float(groups[b, _group(n)]) for b in range(len(layers)) for n in names[b]}
        extras = {(b, n): {"influence": float(influence[b, _group(n)])} for b in range(len(layers)) for n in names[b]}
        return out, extras
    elif allocation != "uniform":
        raise ValueError(f"unknown allocation {allocation!r}")
    return {(b, n): float(per_block[b]) for b in range(len(layers)) for n in names[b]}, extras


# --------------------------------------------------------------------------- unstructured


def _row(block, name, weight, mask, target, values=None, extra=None) -> dict:
    return {
        "block": block, "name": name, "rows": weight.shape[0], "cols": weight.shape[1],
        "target_sparsity": target, "achieved_sparsity": float(mask.float().mean()),
        "zeroed": np.packbits(mask.cpu().numpy().reshape(-1)).tobytes(),
        "values": None if values is None else values.contiguous().cpu().view(torch.uint8).numpy().tobytes(),
        "outlier_ratio": None, "alpha": None, "influence": None, **(extra or {}),
    }


def prune_unstructured(model, method: str, target: dict, nm=None, samples=None, device="cpu",
                       group: str | None = None, extras: dict | None = None, restore: bool = False,
                       batch_tokens: int = driver.DEFAULT_BATCH_TOKENS) -> list[dict]:
    """Prune `model` with `method` at `target[(block, name)]`; return the mask rows. The model
    keeps the pruned weights unless `restore` (dense again afterwards, less memory).

    group: how magnitude and Wanda pick the lowest scores, 'row' or 'matrix' (default: Wanda
    per row, magnitude per matrix). SparseGPT chooses over blocks of 128 columns.
    """
    group = group or ("row" if method == "wanda" else "matrix")
    extras = extras or {}
    rows: list[dict] = []

    def on_block(b, block, stats):
        if method == "sparsegpt":
            return sparsegpt_block(b, block, stats)
        for name, module in driver.linears(block):
            s, W = target[(b, name)], module.weight
            score = scores.wanda_scores(W, stats[name]) if method == "wanda" else scores.magnitude_scores(W)
            mask = scores.select(score, s, nm, group)
            W.data = W.data.masked_fill(mask, 0)  # a new tensor: see driver.run(restore=...)
            rows.append(_row(b, name, W, mask, s, None, extras.get((b, name))))

    def sparsegpt_block(b, block, stats):
        # linears fed the same input share H: invert it once and prune them stacked
        shared: dict[int, list] = {}
        for name, module in driver.linears(block):
            shared.setdefault(id(stats[name]), []).append((name, module))
        done = {}
        for members in shared.values():
            H = stats[members[0][0]]
            for name, _ in members:  # H is only needed until its inverse exists: let it go then
                del stats[name]
            hinv, dead = inverse_hessian(H, overwrite=True)
            del H
            sizes = [m.weight.shape[0] for _, m in members]
            new, mask = sparsegpt([m.weight for _, m in members], hinv, dead, [target[(b, n)] for n, _ in members], nm)
            del hinv
            for (name, module), w, z in zip(members, new.split(sizes), mask.split(sizes)):
                module.weight.data = w.to(module.weight.dtype)
                done[name] = (module.weight, z)
        for name, _ in driver.linears(block):  # rows in module order
            W, z = done[name]
            rows.append(_row(b, name, W, z, target[(b, name)], W.data, extras.get((b, name))))

    if method == "magnitude":
        with torch.no_grad():
            for b, block in enumerate(decoder_layers(model)):
                dense = [(p, p.data) for p in block.parameters()] if restore else []
                on_block(b, block, {})
                for param, original in dense:
                    param.data = original
    elif method in ("wanda", "sparsegpt"):
        if not samples:
            raise ValueError(f"method {method} needs calibration data; pass --calibration")
        collect = "wanda" if method == "wanda" else "hessian"
        driver.run(model, samples, device, collect=collect, on_block=on_block, restore=restore,
                   batch_tokens=batch_tokens, label=method)
    else:
        raise ValueError(f"unknown unstructured method {method!r}")
    return rows


# --------------------------------------------------------------------------- stage


def compute(model, spec: dict, samples=None, stats: dict | None = None) -> pd.DataFrame:
    prune, stats = spec["prune"], stats or {}
    method = prune["method"]
    device = resolve_device(spec.get("device", "cpu"))
    if method in ("shortgpt", "reverse"):
        L = len(decoder_layers(model))
        if method == "shortgpt":
            score = stats.get("block_influence")
            if score is None:
                if not samples:
                    raise ValueError("method shortgpt needs calibration data; pass --calibration")
                score = structured.block_influence(model, samples, device)
            removed = structured.shortgpt_blocks(score, prune["layers"])
        else:
            score = np.arange(L, dtype=np.float64)
            removed = structured.reverse_blocks(L, prune["layers"])
        return pd.DataFrame({"block": np.arange(L), "score": score, "removed": [b in removed for b in range(L)]})
    if method == "dense":
        raise ValueError("variant method dense has no masks; generate from the base model")
    group = "matrix" if prune.get("allocation") == "layerif" and method != "sparsegpt" else None
    target, extras = targets(model, prune, stats, samples, device)
    # the masks are the product; the pruned model itself is not needed (export re-applies them)
    rows = prune_unstructured(model, method, target, scores.parse_nm(prune.get("nm")), samples, device, group, extras,
                              restore=True)
    return pd.DataFrame(rows)


def read_stats(paths) -> dict:
    """{kind: statistics} from artifacts of the stats stage (kind read from their provenance)."""
    out = {}
    for path in paths or []:
        kind = read_provenance(path).get("kind")
        if kind not in model_stats.KINDS:
            raise ValueError(f"{path}: not a statistics artifact (kind {kind!r}); expected one of {', '.join(model_stats.KINDS)}")
        out[kind] = model_stats.parse(kind, read_table(path))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--calibration", help="calibration Parquet (results/calibration/M/C.parquet)")
    parser.add_argument("--stats", nargs="*", default=[], help="per-model statistics (results/stats/M/*.parquet)")
    parser.add_argument("--spec", required=True, help="JSON (or @file): pipeline.config.mask_slice")
    parser.add_argument("--out", required=True, help="results/masks/M/V.parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    samples = read_calibration(args.calibration) if args.calibration else None
    model = load_model(args.model, dtype=spec.get("dtype", "float32"))
    table = compute(model, spec, samples, read_stats(args.stats))
    write_table(table, args.out, spec)
    if "achieved_sparsity" in table:
        mean = float((table.achieved_sparsity * table.rows * table.cols).sum() / (table.rows * table.cols).sum())
        print(f"{spec.get('variant')}: {len(table)} matrices, mean sparsity {mean:.4f}", file=sys.stderr)
    else:
        print(f"{spec.get('variant')}: removed blocks {table.block[table.removed].tolist()}", file=sys.stderr)


if __name__ == "__main__":
    main()
