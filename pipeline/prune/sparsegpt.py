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

from pipeline.prune.scores import kth_smallest


def inverse_hessian(hessian: torch.Tensor, damp: float = 0.01, overwrite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, dead columns).

    Columns never activated (diag H = 0) get H_ii = 1; their weights must be zeroed by the
    caller. The result depends on H only, so matrices sharing an input share it.
    overwrite: `hessian` (fp32) may be used as scratch space, saving a copy of it; a caller
    that keeps no reference of its own lets each intermediate go as soon as the next exists.
    """
    H = hessian.float() if overwrite else hessian.float().clone()
    del hessian
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
    weight: torch.Tensor | list[torch.Tensor],
    hinv: torch.Tensor,
    dead: torch.Tensor,
    sparsity: float | list[float] | None,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune `weight` given `inverse_hessian(H)`. Returns (updated fp32 weight, mask), mask
    True where a weight was pruned.

    Unstructured: in each block of columns, weights with score <= the int(numel * sparsity)-th
    smallest are pruned (as both references do: one more than int(numel * sparsity) when
    there are no ties). N:M: at every column i with i % M == 0, the N lowest of the next M
    columns of each row, scored on the already updated weights.

    Rows evolve independently given H, so matrices sharing an input (q/k/v, gate/up) can be
    pruned in one pass: pass them as a list and `sparsity` one value per matrix; each matrix's
    mask is still chosen over its own rows only.
    """
    parts = list(weight) if isinstance(weight, list | tuple) else [weight]
    groups = [p.shape[0] for p in parts]
    # Work on W^T: a column of W is then a contiguous row, so the per-column updates below
    # stream through memory. Element by element the arithmetic is the reference's.
    WT = torch.cat([p.detach().float() for p in parts]).T.contiguous()  # a new tensor (transposing after cat is fast)
    WT[dead] = 0
    cols, rows = WT.shape
    sparsities = sparsity if isinstance(sparsity, list | tuple) else [sparsity] * len(groups)
    bounds = torch.tensor([0] + groups).cumsum(0).tolist()
    maskT = torch.zeros_like(WT, dtype=torch.bool)
    ErrT = torch.empty(min(blocksize, cols), rows, dtype=WT.dtype, device=WT.device)  # row i: column i's error
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = WT[i1:i2]  # views: updated in place
        mask1 = maskT[i1:i2]
        Hinv1 = hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1).reshape(-1, 1)
        if nm is None:
            for r1, r2, s in zip(bounds, bounds[1:], sparsities):
                if s <= 0:
                    continue
                tmp = W1[:, r1:r2] ** 2 / d1**2
                mask1[:, r1:r2] = tmp <= kth_smallest(tmp.flatten(), int(tmp.numel() * s) + 1)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                tmp = (W1[i : i + nm[1]] ** 2 / d1[i : i + nm[1]] ** 2).T  # rows x M, as the reference
                mask1[i : i + nm[1]].T.scatter_(1, torch.topk(tmp, nm[0], dim=1, largest=False)[1], True)
            w, pruned, err = W1[i], mask1[i], ErrT[i]
            # w - q: w where pruned, exactly 0 elsewhere; divided as the reference
            torch.div(torch.where(pruned, w, 0.0), Hinv1[i, i], out=err)
            # rank-1 update; product and difference rounded separately (no fused multiply-add), as the reference
            W1[i + 1 :] -= torch.outer(Hinv1[i, i + 1 :], err)
            w.masked_fill_(pruned, 0)  # the pruned column q
        # the lazy update of all later columns, with the reference's operands (Err1 @ Hinv; a
        # transposed product would round differently)
        WT[i2:] -= ErrT[: i2 - i1].T.contiguous().matmul(hinv[i1:i2, i2:]).T
    return WT.T.contiguous(), maskT.T.contiguous()

