"""LayerIF influence scores: the DataInf formula and its streamed computation on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.models import load_model
from pipeline.prune import influence as inf


def _explicit_datainf(train: torch.Tensor, val: torch.Tensor, damping: float = 0.1) -> torch.Tensor:
    """DataInf written out: H^-1 ~ mean_j inv(g_j g_j^T + lam I), influence_i = -v^T H^-1 g_i."""
    n, d = train.shape
    lam = damping * train.square().mean()
    h_inv = sum(torch.linalg.inv(torch.outer(g, g) + lam * torch.eye(d, dtype=train.dtype)) for g in train) / n
    return -(train @ h_inv @ val)


def test_datainf_matches_explicit_inverse():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(7, 12, generator=gen, dtype=torch.float64)
    val = torch.randn(12, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(inf.datainf_influence(train, val), _explicit_datainf(train, val))


def test_datainf_single_sample_by_hand():
    # one sample g = (1, 2), v = (3, 0): lam = 0.1 * mean(1, 4) = 0.25, |g|^2 = 5, v.g = 3
    # H^-1 g = g / (lam + |g|^2), so influence = -v.g / 5.25
    g, v = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([3.0, 0.0], dtype=torch.float64)
    assert inf.datainf_influence(g, v).item() == pytest.approx(-3 / 5.25)


def test_training_on_the_validation_set_helps():
    # train == validation: sum_i influence_i = -n v^T H^-1 v < 0, since H^-1 is positive definite
    grads = torch.randn(5, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert inf.datainf_influence(grads, grads.mean(0)).sum() < 0


def _random_ids(vocab: int, count: int, length: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(count, length)).tolist()


@pytest.fixture(scope="module")
def model(tiny_model):
    torch.manual_seed(0)
    return load_model(tiny_model)


def test_layer_influence_shape_and_values(model):
    vocab = model.config.vocab_size
    scores = inf.layer_influence(model, _random_ids(vocab, 4, 12, 0), _random_ids(vocab, 3, 12, 1))
    assert scores.shape == (4, 2)
    assert np.isfinite(scores).all() and (scores >= 0).all() and scores.sum() > 0
    # the model is left as it was: no gradients requested, eval mode
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())


def test_streamed_influence_equals_datainf_on_per_sample_gradients(model):
    """Per-sample gradients taken independently (full backward, .grad of each matrix), DataInf
    per matrix, summed per group, must equal the streamed computation."""
    vocab = model.config.vocab_size
    train, val = _random_ids(vocab, 4, 10, 2), _random_ids(vocab, 2, 10, 3)
    streamed = inf.sample_influence(model, train, val)

    groups = inf.sublayer_groups(model)

    def grads(ids):
        model.zero_grad()
        tokens = torch.tensor([ids])
        model(input_ids=tokens, labels=tokens).loss.backward()
        return {(b, g, k): m.weight.grad.double().flatten().clone()
                for b, block in enumerate(groups) for g, name in enumerate(inf.GROUPS)
                for k, m in enumerate(block[name])}

    train_grads, val_grads = [grads(ids) for ids in train], [grads(ids) for ids in val]
    model.zero_grad()
    expected = np.zeros((len(train), len(groups), 2))
    for key in train_grads[0]:
        g = torch.stack([t[key] for t in train_grads])
        v = torch.stack([t[key] for t in val_grads]).mean(0)
        expected[:, key[0], key[1]] += inf.datainf_influence(g, v).numpy()
    np.testing.assert_allclose(streamed, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(inf.layer_influence(model, train, val), np.clip(expected, 0, None).sum(0), rtol=1e-4)


def test_influence_of_the_validation_set_on_itself_is_negative(model):
    ids = _random_ids(model.config.vocab_size, 3, 12, 4)
    total = inf.sample_influence(model, ids, ids).sum(0)
    assert (total < 0).all()


def test_sublayer_groups_split_attention_and_mlp(model):
    groups = inf.sublayer_groups(model)
    assert len(groups) == 4
    assert [len(g["attention"]) for g in groups] == [4] * 4 and [len(g["mlp"]) for g in groups] == [3] * 4


def test_rejects_empty_or_too_short_sequences(model):
    with pytest.raises(ValueError, match="at least one"):
        inf.layer_influence(model, [], [[1, 2, 3]])
    with pytest.raises(ValueError, match="2 tokens"):
        inf.layer_influence(model, [[1]], [[1, 2, 3]])
