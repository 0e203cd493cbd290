"""Blocks of different attention types (Gemma3's 5 sliding : 1 full, gpt-oss alternating): the
driver captures each type's causal mask and rotary embeddings, so block by block it computes
what the whole model computes."""

import pytest
import torch

from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import driver
from pipeline.stages.masks import prune_unstructured
from tests import tiny_models


@pytest.fixture(scope="module", params=["gemma3_text", "gpt_oss"])
def mixed(request, tmp_path_factory):
    return tiny_models.build(tmp_path_factory.mktemp(request.param), request.param)


def test_each_block_gets_its_own_types_arguments(mixed):
    model = load_model(mixed)
    types = driver.block_types(model)
    assert len(set(types)) == 2 and types == list(model.config.layer_types)
    (hidden, per_type), = driver.capture_inputs(model, [list(range(3, 27))], "cpu")
    assert set(per_type) == set(types)
    # the window (8) is shorter than the sequence (24): the two masks differ
    sliding, full = per_type["sliding_attention"]["attention_mask"], per_type["full_attention"]["attention_mask"]
    assert sliding is not None and (full is None or not torch.equal(sliding, full))
    assert decoder_layers(model)[0].__class__.__name__ != "_Capture"  # blocks restored


def test_block_by_block_equals_the_whole_model(mixed):
    """Dense propagation through the driver reproduces the model's hidden states at every
    block, sliding blocks included (wrong masks would change them: window 8 < 24 tokens)."""
    model = load_model(mixed)
    samples = torch.randint(0, 500, (3, 24), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(samples), output_hidden_states=True).hidden_states
    seen = {}
    driver.run(model, samples, observe=lambda i, x, y: seen.setdefault(i, x), propagate="dense")
    for i in range(len(decoder_layers(model))):
        torch.testing.assert_close(seen[i], expected[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_pruning_mixed_attention_models(mixed, method):
    model = load_model(mixed)
    names = [n for n, _ in driver.matrices(decoder_layers(model)[0])]
    target = {(b, n): 0.5 for b in range(len(decoder_layers(model))) for n in names}
    samples = torch.randint(0, 500, (4, 24), generator=torch.Generator().manual_seed(1)).tolist()
    rows = prune_unstructured(model, method, target, None, samples)
    assert len(rows) == len(target)
    assert all(abs(r["achieved_sparsity"] - 0.5) <= 1 / r["cols"] for r in rows)
