"""Structured pruning: choose whole decoder blocks and remove them from a model.

ShortGPT (Men et al.) scores block i by its influence BI_i = mean over tokens of
1 - cos(h_i, h_{i+1}), h_i the hidden state entering block i, and removes the n least
influential. As in paper A the last block is not scored (transformers returns the final hidden
state after the final norm), so it is never removed. Reverse order (paper B) drops the n blocks
just before the final one.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.models.models import decoder_layers
from pipeline.prune import driver


def block_influence(model, samples, device: str = "cpu", batch_tokens: int = driver.DEFAULT_BATCH_TOKENS) -> np.ndarray:
    """BI per block (float64, NaN for the last block), from the dense model's hidden states."""
    n = len(decoder_layers(model))
    total = torch.zeros(n, dtype=torch.float64)
    tokens = torch.zeros(n, dtype=torch.float64)

    def observe(i, inputs, outputs):
        cos = torch.nn.functional.cosine_similarity(inputs.float(), outputs.float(), dim=-1)
        total[i] += (1 - cos).double().sum().cpu()
        tokens[i] += cos.numel()

    driver.run(model, samples, device, observe=observe, propagate="dense", batch_tokens=batch_tokens, label="influence")
    scores = (total / tokens).numpy()
    scores[-1] = np.nan
    return scores


def shortgpt_blocks(scores: np.ndarray, n: int) -> list[int]:
    """The n blocks with the lowest influence (NaN = not a candidate); ties go to the lower index."""
    candidates = [i for i in np.argsort(scores, kind="stable") if not np.isnan(scores[i])]
    if n > len(candidates):
        raise ValueError(f"cannot remove {n} blocks: only {len(candidates)} are candidates")
    return sorted(int(i) for i in candidates[:n])


def reverse_blocks(num_blocks: int, n: int) -> list[int]:
    """The n blocks just before the final one."""
    if n >= num_blocks:
        raise ValueError(f"cannot remove {n} of {num_blocks} blocks; the final block stays")
    return list(range(num_blocks - 1 - n, num_blocks - 1))


def remove_blocks(model, blocks: list[int]) -> None:
    """Delete `blocks` in place and renumber what remains, so that the model and its saved config
    agree: num_hidden_layers, per-layer config lists (layer_types), each attention's layer_idx
    (the key of its KV-cache slot)."""
    layers = decoder_layers(model)
    gone = set(blocks)
    keep = [i for i in range(len(layers)) if i not in gone]
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    model.model.layers = kept
    config = model.config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in keep]
    if getattr(config, "max_window_layers", None) is not None:
        config.max_window_layers = min(config.max_window_layers, len(keep))
    for new, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
