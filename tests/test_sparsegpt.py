"""SparseGPT against a straightforward implementation of the same algorithm."""

import pytest
import torch

from pipeline.prune.sparsegpt import inverse_hessian, sparsegpt


def _problem(rows=24, cols=300, tokens=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, cols, generator=g) * torch.rand(cols, generator=g) * 3
    x[:, 7] = 0  # a dead input column
    H = 2 / 4 * x.T @ x
    return torch.randn(rows, cols, generator=g), H


def _straightforward(W, H, sparsity, nm=None, blocksize=128, damp=0.01):
    """Column by column over the whole matrix, no lazy batching, float64 explicit inverses."""
    W, H = W.double().clone(), H.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(len(H), dtype=H.dtype)
    U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    cols = W.shape[1]
    mask = torch.zeros_like(W, dtype=torch.bool)
    for i in range(cols):
        if i % blocksize == 0 and nm is None:
            b = slice(i, min(i + blocksize, cols))
            score = W[:, b] ** 2 / torch.diag(U)[b] ** 2
            mask[:, b] = score <= torch.sort(score.flatten())[0][int(score.numel() * sparsity)]
        if nm is not None and (i % blocksize) % nm[1] == 0:
            score = W[:, i : i + nm[1]] ** 2 / torch.diag(U)[i : i + nm[1]] ** 2
            low = torch.topk(score, nm[0], dim=1, largest=False).indices
            mask[:, i : i + nm[1]].scatter_(1, low, True)
        err = torch.where(mask[:, i], W[:, i], 0.0) / U[i, i]
        W[:, i:] -= torch.outer(err, U[i, i:])
        W[mask[:, i], i] = 0
    return W, mask


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_matches_straightforward_implementation(nm):
    W, H = _problem()
    hinv, dead = inverse_hessian(H)
    ours, mask = sparsegpt(W, hinv, dead, 0.5, nm)
    ref, ref_mask = _straightforward(W, H, 0.5, nm)
    assert torch.equal(mask, ref_mask)
    assert torch.allclose(ours.double(), ref, atol=1e-4, rtol=1e-4)
    assert (ours[mask] == 0).all() and (ours[:, 7] == 0).all()


def test_sparsity_and_nm_pattern():
    W, H = _problem(rows=16, cols=256)
    hinv, dead = inverse_hessian(H)
    _, mask = sparsegpt(W, hinv, dead, 0.5)
    # per 128-column block: int(numel * s) + 1 (the reference's "<= threshold")
    assert mask.sum() == 2 * (int(16 * 128 * 0.5) + 1)
    _, mask = sparsegpt(W, hinv, dead, None, (2, 4))
    assert mask.reshape(16, 64, 4).sum(-1).eq(2).all()


def test_stacked_groups_equal_separate_runs():
    W, H = _problem(rows=30)
    hinv, dead = inverse_hessian(H)
    parts = W.split([10, 20])
    stacked, mask = sparsegpt(list(parts), hinv, dead, [0.3, 0.6])
    for part, s, out, m in zip(parts, (0.3, 0.6), stacked.split([10, 20]), mask.split([10, 20])):
        alone, alone_mask = sparsegpt(part, hinv, dead, s)
        assert torch.equal(alone_mask, m)
        assert torch.allclose(alone, out, atol=1e-6)


def test_reduces_reconstruction_error_against_magnitude():
    W, H = _problem(rows=32, cols=128, seed=5)
    hinv, dead = inverse_hessian(H)
    ours, _ = sparsegpt(W, hinv, dead, 0.5)
    mag = W.clone()
    mag[:, 7] = 0
    mag[W.abs() <= W.abs().flatten().kthvalue(W.numel() // 2).values] = 0
    err = lambda V: torch.trace((V - W) @ H @ (V - W).T)  # noqa: E731 - output error ||(V-W)X||^2
    assert err(ours) < err(mag)
