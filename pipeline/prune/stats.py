"""Stage: per-model statistics shared by every variant that needs them.

    python -m pipeline.prune.stats --kind KIND --model MANIFEST [--calibration CAL.parquet]
        --spec JSON --out results/stats/M/KIND[-CAL].parquet

KIND (one row per matrix or block):
  activations      dense-model Wanda input statistics r_j = sum_tokens x_j^2 / sequences per
                   linear, dense propagation (OWL's outlier ratios): block, name, cols, sq_mean
  alphas           AlphaPruning's heavy-tail exponent per linear: block, name, params, alpha
  block_influence  ShortGPT block influence: block, score (NaN for the last block)
  layerif          LayerIF influence per block and group: block, group, score
`spec` is {model, dtype, device} (plus the calibration set's name where one is read). The kind
is stored in the artifact's provenance.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from pipeline.core import config
from pipeline.core.artifacts import read_table, spec_argument, write_table
from pipeline.data.calibration import read_calibration
from pipeline.models.lazy_model import load_lazily, loaded
from pipeline.models.models import decoder_layers, load_model, resolve_device
from pipeline.prune import driver

KINDS = ("activations", "alphas", "block_influence", "layerif")
NEEDS_CALIBRATION = ("activations", "block_influence", "layerif")


def dense_activations(model, samples, device="cpu") -> dict[tuple[int, str], torch.Tensor]:
    """{(block, linear name): r} from the dense model (no pruning between blocks)."""
    out = {}

    def keep(b, _block, stats):
        out.update({(b, name): t.cpu() for name, t in stats.items()})

    driver.run(model, samples, device, collect="wanda", on_block=keep, propagate="dense", label="activations")
    return out


def alphas(model) -> pd.DataFrame:
    from pipeline.prune.allocation import esd_alpha

    rows = []
    for b, block in enumerate(decoder_layers(model)):
        with loaded(block):
            for name, W in driver.matrices(block):
                rows.append({"block": b, "name": name, "params": W.numel(), "alpha": esd_alpha(W)})
    return pd.DataFrame(rows)


def layerif_scores(model, samples) -> np.ndarray:
    """LayerIF scores (blocks x 2) with the first half of the calibration sequences as training
    samples and the second half as validation samples."""
    from pipeline.prune.influence import layer_influence

    if len(samples) < 2:
        raise ValueError("LayerIF needs at least 2 calibration sequences (half train, half validation)")
    half = len(samples) // 2
    return np.asarray(layer_influence(model, samples[:half], samples[half:]), dtype=np.float64)


def compute(kind: str, model, samples=None, device="cpu") -> pd.DataFrame:
    if kind in NEEDS_CALIBRATION and not samples:
        raise ValueError(f"statistics {kind} need calibration data; pass --calibration")
    if kind == "activations":
        stats = dense_activations(model, samples, device)
        return pd.DataFrame([{"block": b, "name": n, "cols": t.numel(), "sq_mean": t.float().numpy()}
                             for (b, n), t in stats.items()])
    if kind == "alphas":
        return alphas(model)
    if kind == "block_influence":
        from pipeline.prune.structured import block_influence

        score = block_influence(model, samples, device)
        return pd.DataFrame({"block": np.arange(len(score)), "score": score})
    if kind == "layerif":
        from pipeline.prune.allocation import GROUPS

        score = layerif_scores(model, samples)
        return pd.DataFrame({"block": np.repeat(np.arange(len(score)), 2), "group": list(GROUPS) * len(score),
                             "score": score.reshape(-1)})
    raise ValueError(f"unknown statistics kind {kind!r}; choose one of {', '.join(KINDS)}")


def parse(kind: str, table: pd.DataFrame):
    """The in-memory form the masks stage uses: activations -> {(block, name): tensor};
    block_influence -> array per block; layerif -> array (blocks, 2); alphas -> the table."""
    if kind == "activations":
        return {(int(r.block), r.name): torch.tensor(np.asarray(r.sq_mean, dtype=np.float32)) for r in table.itertuples()}
    if kind == "block_influence":
        return table.sort_values("block")["score"].to_numpy(dtype=np.float64)
    if kind == "layerif":
        from pipeline.prune.allocation import GROUPS

        out = np.zeros((int(table.block.max()) + 1, 2))
        for r in table.itertuples():
            out[int(r.block), GROUPS.index(r.group)] = r.score
        return out
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--calibration", help="calibration Parquet, for " + ", ".join(NEEDS_CALIBRATION))
    parser.add_argument("--spec", required=True, help="JSON (or @file): {model, dtype, device[, calibration]}")
    parser.add_argument("--out", required=True, help="results/stats/M/KIND[-CAL].parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "stats", spec)  # the workflow's own refusals, before loading
    samples = read_calibration(args.calibration) if args.calibration else None
    # LayerIF needs the whole model at once; the others read one block at a time from disk
    model = (load_model if args.kind == "layerif" else load_lazily)(args.model, dtype=spec.get("dtype", "float32"))
    table = compute(args.kind, model, samples, resolve_device(spec.get("device", "cpu")))
    write_table(table, args.out, spec, kind=args.kind)


if __name__ == "__main__":
    from pipeline.core.environment import lean_process

    lean_process()
    main()
