"""Stage: compute a variant's pruning masks (or the blocks it removes).

    python -m pipeline.stages.masks --model results/models/M/model.json [--calibration CAL.parquet]
        [--stats results/stats/M/KIND.parquet ...] --spec JSON --out results/masks/M/V.parquet

`spec` is pipeline.core.slices.mask_slice(): {model, dtype, variant, prune: {method, sparsity, nm,
allocation, owl|alphapruning|layerif, layers}, device}. Unstructured methods write one row per
matrix, each written (as its own Parquet row group) as soon as its block is pruned
(docs/ARCHITECTURE.md: block, name, rows, cols, target/achieved sparsity, packed
`zeroed` mask, SparseGPT's updated surviving weights as `values`, the allocation's inputs); shortgpt and reverse one
row per block (block, score, removed). Statistics shared by variants (pipeline.stages.stats) are read
from --stats when given and computed here otherwise. Statistics are fp32 whatever the dtype.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from pipeline.core import config
from pipeline.core.artifacts import read_provenance, read_table, spec_argument, write_tables
from pipeline.data.calibration import read_calibration
from pipeline.models.lazy_model import load_lazily, loaded
from pipeline.models.models import decoder_layers, load_model, model_dir, resolve_device
from pipeline.prune import driver, scores, structured, support
from pipeline.prune import stats as model_stats
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


def targets(model, prune: dict, stats: dict, samples, device, variant: str = "<variant>") -> tuple[dict, dict]:
    """Target sparsity per (block, linear name), and the allocation's input per matrix
    ({(block, name): {column: value}}). An allocation that leaves [0, 1) for any block is a
    ConfigError naming variant `variant`'s keys, raised before any weight is pruned."""
    layers = decoder_layers(model)
    names = [[n for n, _ in driver.matrices(block)] for block in layers]
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
            with loaded(block):
                A = torch.cat([scores.wanda_scores(W, r[(b, n)]).flatten() for n, W in driver.matrices(block)])
            ratios.append(alloc.outlier_ratio(A, opts["M"]))
            extras.update({(b, n): {"outlier_ratio": ratios[-1]} for n in names[b]})
        clamp = OWL_CLAMP if prune["method"] in ("wanda", "sparsegpt") else None
        per_block = alloc.owl_block_sparsity(np.array(ratios), sparsity, opts["lambda"], clamp)

        def largest(setting, value):
            new = (value, opts["lambda"]) if setting == "sparsity" else (sparsity, value)
            return alloc.owl_block_sparsity(np.array(ratios), *new, clamp).max()

        refuse(alloc.range_problem(per_block, variant, prune, largest))
    elif allocation == "alphapruning":
        alloc = allocation_module()
        table = stats.get("alphas")
        if table is None:
            table = model_stats.alphas(model)
        refuse(alloc.alphapruning_problem(table, variant, prune))
        alpha = {(int(r.block), r.name): float(r.alpha) for r in table.itertuples()}
        per_block = alloc.alphapruning_blocks(table, sparsity, prune["alphapruning"]["eps"]).sparsity.to_numpy()
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
            for n, W in driver.matrices(block):
                params[b, _group(n)] += W.numel()
        groups = alloc.layerif_group_sparsity(influence, params, sparsity, opts["e1"], opts["e2"], opts["direction"])

        def largest(setting, value):
            s, e2 = (value, opts["e2"]) if setting == "sparsity" else (sparsity, value)
            return alloc.layerif_group_sparsity(influence, params, s, opts["e1"], e2, opts["direction"]).max()

        refuse(alloc.range_problem(groups, variant, prune, largest))
        out = {(b, n): float(groups[b, _group(n)]) for b in range(len(layers)) for n in names[b]}
        extras = {(b, n): {"influence": float(influence[b, _group(n)])} for b in range(len(layers)) for n in names[b]}
        return out, extras
    elif allocation != "uniform":
        raise ValueError(f"unknown allocation {allocation!r}")
    return {(b, n): float(per_block[b]) for b in range(len(layers)) for n in names[b]}, extras


# --------------------------------------------------------------------------- unstructured


def _row(block, name, weight, mask, target, updated: bool = False, extra=None) -> dict:
    """One matrix's row, once `weight` is pruned. `updated` (SparseGPT): keep the surviving
    weights, which the method changed, as `values` (a tensor until `as_table`). The achieved
    sparsity is the share of zeros the exported matrix will have (the mask, and any weight the
    method set to zero besides: SparseGPT's never-activated columns)."""
    return {
        "block": block, "name": name, "rows": weight.shape[0], "cols": weight.shape[1],
        "target_sparsity": target, "achieved_sparsity": float((mask | (weight.detach() == 0)).float().mean()),
        "zeroed": np.packbits(mask.cpu().numpy().reshape(-1)).tobytes(),
        "values": weight.detach()[~mask] if updated else None,
        "outlier_ratio": None, "alpha": None, "influence": None, **(extra or {}),
    }


def as_table(rows: list[dict]) -> pd.DataFrame:
    """Mask rows as a table, tensors of surviving weights as their raw bytes."""
    def raw(t):
        return None if t is None else t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()

    return pd.DataFrame([{**row, "values": raw(row["values"])} for row in rows])


def prune_blocks(model, method: str, target: dict, nm=None, samples=None, device="cpu",
                 group: str | None = None, extras: dict | None = None,
                 batch_tokens: int = driver.DEFAULT_BATCH_TOKENS) -> Iterator[list[dict]]:
    """Prune `model` in place with `method` at `target[(block, name)]`, block by block,
    yielding each block's mask rows as soon as it is pruned. SparseGPT's rows carry the updated
    weights as the block's own tensors: use them before asking for the next block.

    group: how magnitude and Wanda pick the lowest scores, 'row' or 'matrix' (default: Wanda
    per row, magnitude per matrix). SparseGPT chooses over blocks of 128 columns.
    """
    group = group or ("row" if method == "wanda" else "matrix")
    extras = extras or {}

    def select(b, block, stats) -> list[dict]:
        rows = []
        for name, W in driver.matrices(block):
            s = target[(b, name)]
            score = scores.wanda_scores(W, stats[name]) if method == "wanda" else scores.magnitude_scores(W)
            mask = scores.select(score, s, nm, group)
            del score
            W.detach().masked_fill_(mask, 0)
            rows.append(_row(b, name, W, mask, s, extra=extras.get((b, name))))
        return rows

    def sparsegpt_block(b, block, stats) -> list[dict]:
        # linears fed the same input share H: invert it once and prune them stacked
        shared: dict[int, list] = {}
        for name, W in driver.matrices(block):
            shared.setdefault(id(stats[name]), []).append((name, W))
        masks = {}
        for members in shared.values():
            # H is only needed until its inverse exists: hand over the last reference to it
            hinv, dead = inverse_hessian([stats.pop(name) for name, _ in members][0], overwrite=True)
            sizes = [W.shape[0] for _, W in members]
            new, mask = sparsegpt([W for _, W in members], hinv, dead, [target[(b, n)] for n, _ in members], nm)
            del hinv
            for (name, W), w, z in zip(members, new.split(sizes), mask.split(sizes)):
                W.detach().copy_(w)
                masks[name] = z
            del new
        return [_row(b, name, W, masks[name], target[(b, name)], True, extras.get((b, name)))
                for name, W in driver.matrices(block)]  # rows in module order

    if method == "magnitude":
        with torch.no_grad():
            for b, block in enumerate(decoder_layers(model)):
                with loaded(block):
                    yield select(b, block, {})
    elif method in ("wanda", "sparsegpt"):
        if not samples:
            raise ValueError(f"method {method} needs calibration data; pass --calibration")
        collect = "wanda" if method == "wanda" else "hessian"
        prune = select if method == "wanda" else sparsegpt_block
        for b, block, stats in driver.walk(model, samples, device, collect=collect, batch_tokens=batch_tokens,
                                           label=method):
            yield prune(b, block, stats)
    else:
        raise ValueError(f"unknown unstructured method {method!r}")


def prune_unstructured(*args, **kwargs) -> list[dict]:
    """All the mask rows of `prune_blocks` at once."""
    return [row for rows in prune_blocks(*args, **kwargs) for row in rows]


# --------------------------------------------------------------------------- stage


def compute_frames(model, spec: dict, samples=None, stats: dict | None = None) -> Iterator[pd.DataFrame]:
    """The masks table of `spec`'s variant, in parts: one per matrix for unstructured methods
    (the model is pruned in place as they come; a part of SparseGPT holds one updated weight),
    one for structured ones."""
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
        yield pd.DataFrame({"block": np.arange(L), "score": score, "removed": [b in removed for b in range(L)]})
        return
    if method == "dense":
        raise ValueError("variant method dense has no masks; generate from the base model")
    group = "matrix" if prune.get("allocation") == "layerif" and method != "sparsegpt" else None
    target, extras = targets(model, prune, stats, samples, device, spec.get("variant", "<variant>"))
    for rows in prune_blocks(model, method, target, scores.parse_nm(prune.get("nm")), samples, device, group, extras):
        for row in rows:
            yield as_table([row])


def compute(model, spec: dict, samples=None, stats: dict | None = None) -> pd.DataFrame:
    """The whole masks table of `spec`'s variant (see compute_frames)."""
    return pd.concat(list(compute_frames(model, spec, samples, stats)), ignore_index=True)


def sparsity_summary(table: pd.DataFrame) -> str:
    """Realised sparsity, parameter-weighted, overall and per matrix kind (attention, dense MLP,
    experts), with each kind's target."""
    size = table.rows * table.cols
    kinds = table.name.map(driver.kind)
    parts = [f"mean sparsity {float((table.achieved_sparsity * size).sum() / size.sum()):.4f}"]
    for k, label in (("attention", "attention"), ("mlp", "dense MLP"), ("experts", "experts")):
        sel = kinds == k
        if sel.any():
            n = size[sel].sum()
            parts.append(f"{label} {float((table.achieved_sparsity * size)[sel].sum() / n):.4f} "
                         f"(target {float((table.target_sparsity * size)[sel].sum() / n):.4f}, {int(sel.sum())} matrices)")
    return "; ".join(parts)


def read_stats(paths) -> dict:
    """{kind: statistics} from artifacts of the stats stage (kind read from their provenance)."""
    out = {}
    for path in paths or []:
        kind = read_provenance(path).get("kind")
        if kind not in model_stats.KINDS:
            raise ValueError(f"{path}: not a statistics artifact (kind {kind!r}); expected one of {', '.join(model_stats.KINDS)}")
        out[kind] = model_stats.parse(kind, read_table(path))
    return out


def refuse(problem: str | None) -> None:
    if problem:
        raise config.ConfigError([problem])


def refuse_unsupported(model, spec: dict) -> None:
    """What this model's architecture cannot give the variant (quantized experts, an N:M group
    that does not divide a matrix), before any weight is read."""
    problems = support.problems(support.read_config(model), spec["prune"], f"variants.{spec.get('variant')}")
    if problems:
        raise config.ConfigError(problems)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--calibration", help="calibration Parquet (results/calibration/M/C.parquet)")
    parser.add_argument("--stats", nargs="*", default=[], help="per-model statistics (results/stats/M/*.parquet)")
    parser.add_argument("--spec", required=True, help="JSON (or @file): pipeline.core.slices.mask_slice")
    parser.add_argument("--out", required=True, help="results/masks/M/V.parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "masks", spec)  # the workflow's own refusals, before loading
    config.or_exit(refuse_unsupported, model_dir(args.model), spec)
    samples = read_calibration(args.calibration) if args.calibration else None
    stats = read_stats(args.stats)
    if spec["prune"].get("allocation") == "alphapruning" and "alphas" in stats:  # known now: before any weight is read
        config.or_exit(refuse, allocation_module().alphapruning_problem(stats["alphas"], spec.get("variant", "<variant>"), spec["prune"]))
    # block by block from disk, unless LayerIF influence must be computed here (it needs the
    # whole model at once)
    layerif = spec["prune"].get("allocation") == "layerif"
    whole = layerif and not spec["prune"].get("layerif", {}).get("scores") and "layerif" not in stats
    model = (load_model if whole else load_lazily)(args.model, dtype=spec.get("dtype", "float32"))
    summary = []  # the small columns of every part, for the closing line

    def parts():
        for frame in compute_frames(model, spec, samples, stats):
            for row in frame.to_dict("records") if "achieved_sparsity" in frame else []:
                problem = support.realised_problem(row)
                if problem:  # stops before the table is complete: no artifact is written
                    raise SystemExit(f"variant {spec.get('variant')}: {problem}")
            summary.append(frame.drop(columns=["zeroed", "values"], errors="ignore"))
            yield frame

    config.or_exit(write_tables, parts(), args.out, spec)  # an allocation out of range stops it before pruning
    table = pd.concat(summary)
    if "achieved_sparsity" in table:
        print(f"{spec.get('variant')}: {len(table)} matrices, {sparsity_summary(table)}", file=sys.stderr)
    else:
        print(f"{spec.get('variant')}: removed blocks {table.block[table.removed].tolist()}", file=sys.stderr)


if __name__ == "__main__":
    from pipeline.core.environment import lean_process

    lean_process()
    main()
