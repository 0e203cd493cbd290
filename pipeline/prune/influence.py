"""LayerIF sublayer scores: DataInf influence of training samples on the validation loss,
isolated per matrix and summed per attention / MLP group of each decoder block.

docs/LAYERIF.md states the computation; `datainf_influence` is its formula for one matrix,
`sample_influence` streams the same arithmetic over a model without storing per-sample
gradients, and `layer_influence` sums the positive influences into S, shape (blocks, 2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.models.models import decoder_layers

GROUPS = ("attention", "mlp")
DAMPING = 0.1  # DataInf: lambda = mean over samples of mean(g^2), divided by 10


def sublayer_groups(model) -> list[dict[str, list[nn.Module]]]:
    """The prunable linears of each decoder block, split into attention (`self_attn.*`) and MLP
    (`mlp.*`); routers excluded (they are not pruned)."""
    from pipeline.prune.driver import linears

    blocks = []
    for i, block in enumerate(decoder_layers(model)):
        groups = {g: [] for g in GROUPS}
        for name, module in linears(block):
            groups[_group_of(i, name)].append(module)
        blocks.append(groups)
    return blocks


def _group_of(block: int, name: str) -> str:
    if name.startswith("self_attn."):
        return "attention"
    if name.startswith("mlp."):
        return "mlp"
    raise TypeError(f"block {block}: matrix {name} is neither under self_attn nor mlp; cannot assign it to a LayerIF group")


def sublayer_weights(model) -> list[dict[str, list[torch.Tensor]]]:
    """Per block and group, the weights whose gradients LayerIF measures: each linear's weight
    and, in a mixture-of-experts block, each 3-D experts parameter (all experts of one
    projection count as one matrix, as they are one parameter)."""
    from pipeline.prune import experts

    out = []
    for i, (block, groups) in enumerate(zip(decoder_layers(model), sublayer_groups(model))):
        weights = {g: [m.weight for m in groups[g]] for g in GROUPS}
        for name, module in experts.fused_experts(block):
            weights[_group_of(i, name)] += [p for n, p in module.named_parameters() if p.dim() == 3]
        if not all(weights.values()):
            raise TypeError(f"block {i}: found no {'attention' if not weights['attention'] else 'MLP'} matrices")
        out.append(weights)
    return out


def datainf_influence(train_grads: torch.Tensor, val_grad: torch.Tensor, damping: float = DAMPING) -> torch.Tensor:
    """Influence of each training sample on the validation loss through one matrix (DataInf).

    train_grads: (n, d) per-sample loss gradients; val_grad: (d,) mean validation gradient v.
    H^-1 ~ (1/n) sum_j (g_j g_j^T + lam I)^-1 = (1/(n lam)) sum_j (I - g_j g_j^T / (lam + |g_j|^2))
    with lam = damping * mean_j mean(g_j^2); influence_i = -v^T H^-1 g_i. Positive: upweighting
    sample i would raise the validation loss.
    """
    n = train_grads.shape[0]
    lam = damping * train_grads.square().mean()
    c = (train_grads @ val_grad) / (lam + train_grads.square().sum(1))
    hvp = (n * val_grad - c @ train_grads) / (n * lam)
    return -(train_grads @ hvp)


def _sequence_loss(model, ids: list[int]) -> torch.Tensor:
    """Mean next-token cross-entropy of one sequence."""
    device = next(model.parameters()).device
    tokens = torch.tensor([ids], dtype=torch.long, device=device)
    return model(input_ids=tokens, labels=tokens).loss


def _gradients(model, weights: list[torch.Tensor], ids: list[int]) -> list[torch.Tensor]:
    with torch.enable_grad():
        grads = torch.autograd.grad(_sequence_loss(model, ids), weights)
    return [g.float() for g in grads]


def sample_influence(model, train_ids: list[list[int]], val_ids: list[list[int]], damping: float = DAMPING) -> np.ndarray:
    """Per training sample and sublayer group: the sum over the group's matrices of each
    matrix's DataInf influence. Shape (n_train, blocks, 2).

    Equal to `datainf_influence` applied matrix by matrix, rearranged so that only two extra
    weight-sized buffers are kept (mean validation gradient v and w = sum_j c_j g_j):
    influence_i = -(n v.g_i - w.g_i) / (n lam). Training gradients are recomputed in three
    passes (statistics for lam and c_j, then w, then w.g_i) instead of being stored.
    """
    if not train_ids or not val_ids:
        raise ValueError("LayerIF influence needs at least one training and one validation sequence")
    if min(map(len, [*train_ids, *val_ids])) < 2:
        raise ValueError("LayerIF influence: every sequence needs at least 2 tokens (one prediction)")
    groups = sublayer_weights(model)
    weights = [w for block in groups for g in GROUPS for w in block[g]]
    owner = [(b, GROUPS.index(g)) for b, block in enumerate(groups) for g in GROUPS for _ in block[g]]
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)

        val = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
        for ids in val_ids:
            for v, g in zip(val, _gradients(model, weights, ids)):
                v.add_(g, alpha=1.0 / len(val_ids))

        n, k = len(train_ids), len(weights)
        mean_sq, v_dot, sq_norm = (np.zeros((n, k)) for _ in range(3))
        for i, ids in enumerate(train_ids):
            for j, (v, g) in enumerate(zip(val, _gradients(model, weights, ids))):
                mean_sq[i, j] = g.square().mean().item()
                v_dot[i, j] = torch.sum(v * g).item()
                sq_norm[i, j] = g.square().sum().item()
        lam = damping * mean_sq.mean(0)
        # a matrix whose gradients are all zero has lam = 0 and no influence
        live = lam > 0
        coef = np.divide(v_dot, lam + sq_norm, out=np.zeros_like(v_dot), where=live)

        acc = [torch.zeros_like(v) for v in val]
        for i, ids in enumerate(train_ids):
            for j, (a, g) in enumerate(zip(acc, _gradients(model, weights, ids))):
                a.add_(g, alpha=float(coef[i, j]))

        w_dot = np.zeros((n, k))
        for i, ids in enumerate(train_ids):
            for j, (a, g) in enumerate(zip(acc, _gradients(model, weights, ids))):
                w_dot[i, j] = torch.sum(a * g).item()
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)

    per_matrix = np.divide(-(n * v_dot - w_dot), n * lam, out=np.zeros_like(v_dot), where=live)
    out = np.zeros((n, len(groups), 2))
    for j, (b, g) in enumerate(owner):
        out[:, b, g] += per_matrix[:, j]
    return out


def layer_influence(model, train_ids: list[list[int]], val_ids: list[list[int]]) -> np.ndarray:
    """LayerIF score S of each (block, group), shape (blocks, 2) for attention and MLP: the sum
    over training samples of their positive influences on the validation loss."""
    return np.clip(sample_influence(model, train_ids, val_ids), 0, None).sum(0)
