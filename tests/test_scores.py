"""Mask selection: requested sparsity per row / matrix, N:M patterns, stable tie-breaking."""

import pytest
import torch

from pipeline.prune import scores


def _stable_reference(x, k, dim_flat=False):
    if dim_flat:
        mask = torch.zeros(x.numel(), dtype=torch.bool)
        mask[torch.sort(x.flatten(), stable=True).indices[:k]] = True
        return mask.reshape(x.shape)
    return torch.zeros_like(x, dtype=torch.bool).scatter_(1, torch.sort(x, dim=1, stable=True).indices[:, :k], True)


@pytest.mark.parametrize("shape", [(7, 13), (64, 256)])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.73])
def test_per_row_hits_sparsity_and_prunes_lowest(shape, sparsity):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    mask = scores.mask_per_row(x, sparsity)
    k = int(shape[1] * sparsity)
    assert (mask.sum(1) == k).all()
    # every pruned score is <= every kept score of the same row
    assert (x.masked_fill(~mask, -1).max(1).values <= x.masked_fill(mask, 2).min(1).values).all()


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
def test_whole_matrix_hits_sparsity(sparsity):
    x = torch.randn(33, 47, generator=torch.Generator().manual_seed(2))
    mask = scores.mask_whole(x, sparsity)
    assert mask.sum() == int(x.numel() * sparsity)
    assert x[mask].max() <= x[~mask].min()


def test_ties_are_broken_like_a_stable_sort():
    x = torch.randint(0, 4, (16, 40), generator=torch.Generator().manual_seed(3)).float()
    for s in (0.25, 0.5, 0.6):
        assert torch.equal(scores.mask_per_row(x, s), _stable_reference(x, int(40 * s)))
        assert torch.equal(scores.mask_whole(x, s), _stable_reference(x, int(x.numel() * s), dim_flat=True))


def test_rows_with_and_without_ties_at_the_threshold_match_a_stable_sort():
    # half the rows on a grid of 4 values (ties at the k-th score), half distinct: both paths
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randint(0, 4, (8, 40), generator=g).float(), torch.rand(8, 40, generator=g)])
    for s in (0.3, 0.5):
        assert torch.equal(scores.mask_per_row(x, s), _stable_reference(x, int(40 * s)))
        assert torch.equal(scores.mask_per_row(x[8:], s), _stable_reference(x[8:], int(40 * s)))


def test_kth_smallest_is_kthvalue():
    g = torch.Generator().manual_seed(6)
    for x in (torch.rand(9, 31, generator=g), torch.randint(0, 5, (9, 31), generator=g).float(), torch.rand(57, generator=g)):
        for k in (1, 7, x.shape[-1]):
            assert torch.equal(scores.kth_smallest(x, k), x.kthvalue(k, dim=-1, keepdim=True).values)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_pattern(n, m):
    x = torch.rand(10, 64, generator=torch.Generator().manual_seed(4))
    mask = scores.mask_nm(x, n, m)
    groups = mask.reshape(10, 64 // m, m)
    assert (groups.sum(-1) == n).all()
    xs = x.reshape(10, 64 // m, m)
    assert (xs.masked_fill(~groups, -1).amax(-1) <= xs.masked_fill(groups, 2).amin(-1)).all()


def test_nm_tail_group():
    mask = scores.mask_nm(torch.rand(3, 10), 2, 4)  # groups of 4, 4 and a tail of 2
    assert mask[:, :8].reshape(3, 2, 4).sum(-1).eq(2).all() and mask[:, 8:].sum(1).eq(2).all()


def test_wanda_score_formula():
    w = torch.tensor([[1.0, -2.0], [-3.0, 0.5]])
    r = torch.tensor([4.0, 0.25])
    assert torch.allclose(scores.wanda_scores(w, r), torch.tensor([[2.0, 1.0], [6.0, 0.25]]))
    assert scores.parse_nm("2:4") == (2, 4) and scores.parse_nm(None) is None
    with pytest.raises(ValueError):
        scores.select(w, 0.5, None, "column")
