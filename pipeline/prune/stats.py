"""Per-model statistics shared by every variant that needs them: computed here, written by the
stats stage (pipeline.stages.stats), parsed back for the masks stage.

KIND (one row per matrix or block):
  activations      dense-model Wanda input statistics r_j = sum_tokens x_j^2 / sequences per
                   linear, dense propagation (OWL's outlier ratios): block, name, cols, sq_mean
  alphas           AlphaPruning's heavy-tail exponent per linear: block, name, params, alpha
  block_influence  ShortGPT block influence: block, score (NaN for the last block)
  layerif          LayerIF influence per block and group: block, group, score
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.models.lazy_model import loaded
from pipeline.models.models import decoder_layers
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
