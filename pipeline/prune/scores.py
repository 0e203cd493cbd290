"""Pure scoring and mask selection for unstructured pruning.

Scores are fp32 tensors shaped like the weight; a mask is a boolean tensor of the same shape,
True where the weight is set to zero. Selection never looks at anything but the scores, so
each method is "score, then select": magnitude selects over the whole matrix, Wanda per output
row, N:M within every group of M consecutive input columns of a row.
"""

from __future__ import annotations

import numpy as np
import torch


def parse_nm(nm: str | None) -> tuple[int, int] | None:
    """'2:4' -> (2, 4); None stays None."""
    if not nm:
        return None
    n, m = (int(x) for x in nm.split(":"))
    return n, m


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().float().abs()


def wanda_scores(weight: torch.Tensor, sq_mean: torch.Tensor) -> torch.Tensor:
    """|W_ij| * sqrt(r_j), r_j = sum over calibration tokens of x_j^2 / number of sequences."""
    return weight.detach().float().abs() * sq_mean.float().sqrt().reshape(1, -1)


def kth_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) value along the last dimension, as a dimension of size 1:
    scores.kthvalue(k, dim=-1, keepdim=True).values, the same value. On the CPU by numpy's
    introselect, about ten times faster than torch.kthvalue there."""
    if scores.device.type == "cpu":
        part = np.partition(scores.detach().numpy(), k - 1, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(part[..., k - 1 : k]))
    return scores.kthvalue(k, dim=-1, keepdim=True).values


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest scores along the last dim, ties broken by position, exactly as a
    stable sort would, in linear time (a k-th value threshold instead of a full sort)."""
    thresh = kth_smallest(scores, k)
    chosen = scores <= thresh
    if bool((chosen.sum(-1, dtype=torch.int32) == k).all()):  # the usual case: no surplus tie at the threshold
        return chosen
    below = scores < thresh
    tie = scores == thresh
    need = k - below.sum(-1, keepdim=True)
    return below | (tie & (tie.cumsum(-1) <= need))


def mask_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the int(cols * sparsity) lowest scores of each row; ties go to the lower column
    index (the reference's stable sort)."""
    k = int(scores.shape[1] * sparsity)
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    return _lowest(scores, k)


def mask_whole(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the int(numel * sparsity) lowest scores of the matrix (ties: row-major order)."""
    k = int(scores.numel() * sparsity)
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    return _lowest(scores.flatten(), k).reshape(scores.shape)


def mask_nm(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In every group of m consecutive input columns of a row, zero the n lowest scores.
    A trailing group shorter than m (cols not divisible by m) keeps at most its own size."""
    rows, cols = scores.shape
    mask = torch.zeros_like(scores, dtype=torch.bool)
    full = cols - cols % m
    if full:
        groups = scores[:, :full].reshape(rows, full // m, m)
        low = torch.topk(groups, n, dim=2, largest=False).indices
        mask[:, :full] = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, low, True).reshape(rows, full)
    if full < cols:
        tail = scores[:, full:]
        low = torch.topk(tail, min(n, tail.shape[1]), dim=1, largest=False).indices
        mask[:, full:].scatter_(1, low, True)
    return mask


def select(scores: torch.Tensor, sparsity: float | None, nm: tuple[int, int] | None, group: str) -> torch.Tensor:
    """The mask for one matrix: N:M when given, else `group` 'row' or 'matrix' at `sparsity`."""
    if nm is not None:
        return mask_nm(scores, *nm)
    if group == "row":
        return mask_per_row(scores, sparsity)
    if group == "matrix":
        return mask_whole(scores, sparsity)
    raise ValueError(f"unknown selection group {group!r}; use 'row' or 'matrix'")
