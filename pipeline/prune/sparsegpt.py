"""SparseGPT on one weight matrix (Frantar & Alistarh, 2023), as a pure function.

Given W (rows x cols) and the layer-input Hessian H = (2 / nsamples) * sum X X^T (cols x cols,
fp32), walk the columns in blocks of 128: choose the mask of the block from
W^2 / diag(Hinv)^2, zero the chosen weights one column at a time while spreading each error
over the remaining columns of the block (OBS update), then apply the block's accumulated error
to all later columns at once. Hinv is the upper Cholesky factor of the damped inverse Hessian.
"""

from __future__ import annotations

import sys

import torch


def inverse_hessian(hessian: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, dead columns).

    Columns never activated (diag H = 0) get H_ii = 1; their weights must be zeroed by the
    caller. The result depends on H only, so matrices sharing an input share it.
    """
    H = hessian.float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    idx = torch.arange(H.shape[0], device=H.device)
    H[idx, idx] += damp * torch.mean(torch.diag(H))
    try:
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        return torch.linalg.cholesky(H, upper=True), dead
    except torch.linalg.LinAlgError:
        # the reference falls back to plain magnitude-like OBS with an identity inverse
        print("sparsegpt: Hessian not positive definite; using identity (use more calibration "
              "samples or raise the damping)", file=sys.stderr)
        return torch.eye(H.shape[0], dtype=H.dtype, device=H.device), dead


def sparsegpt(
    weight: torch.Tensor,
    hinv: torch.Tensor,
    dead: torch.Tensor,
    sparsity: float | list[float] | None,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    groups: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune `weight` given `inverse_hessian(H)`. Returns (updated fp32 weight, mask), mask
    True where a weight was pruned.

    Unstructured: in each block of columns, weights with score <= the int(numel * sparsity)-th
    smallest are pruned (as both references do: one more than int(numel * sparsity) when
    there are no ties). N:M: at every column i with i % M == 0, the N lowest of the next M
    columns of each row, scored on the already updated weights.

    Rows evolve independently given H, so matrices sharing an input (q/k/v, gate/up) can be
    stacked and pruned in one pass: `groups` gives their row counts and `sparsity` one value
    per group; each group's mask is still chosen over its own rows only.
    """
    W = weight.detach().float().clone()
    W[:, dead] = 0
    rows, cols = W.shape
    groups = groups or [rows]
    sparsities = sparsity if isinstance(sparsity, list | tuple) else [sparsity] * len(groups)
    bounds = torch.tensor([0] + groups).cumsum(0).tolist()
    mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        mask1 = mask[:, i1:i2]  # a view: filled in place
        if nm is None:
            for r1, r2, s in zip(bounds, bounds[1:], sparsities):
                if s <= 0:
                    continue
                tmp = W1[r1:r2] ** 2 / d1.reshape(1, -1) ** 2
                # the int(numel * s)-th smallest (0-based), as sort(...)[int(numel * s)] in linear time
                thresh = tmp.flatten().kthvalue(int(tmp.numel() * s) + 1).values
                mask1[r1:r2] = tmp <= thresh
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                tmp = W1[:, i : i + nm[1]] ** 2 / d1[i : i + nm[1]].reshape(1, -1) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, nm[0], dim=1, largest=False)[1], True)
            w = W1[:, i]
            pruned = mask1[:, i]
            # w - q is w where pruned and exactly 0 elsewhere
            err = torch.where(pruned, w, 0.0) / Hinv1[i, i]
            Q1[:, i] = torch.where(pruned, 0.0, w)
            W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1)  # rank-1 update in place
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(hinv[i1:i2, i2:])
    return W, mask
