"""Layer removal: choice of blocks, block influence, and a checkpoint that reloads."""

import numpy as np
import pytest
import torch

from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import structured


def _samples(n=4, length=16):
    return torch.randint(0, 500, (n, length), generator=torch.Generator().manual_seed(0)).tolist()


def test_block_influence_matches_hidden_states(tiny_model):
    model = load_model(tiny_model)
    samples = _samples()
    ours = structured.block_influence(model, samples)
    total, count = np.zeros(4), 0
    with torch.no_grad():
        for ids in samples:
            hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            for i in range(3):  # hs[4] is after the final norm: the last block is not scored
                total[i] += (1 - torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1)).sum().item()
            count += len(ids)
    assert np.isnan(ours[-1])
    assert np.allclose(ours[:3], total[:3] / count, rtol=1e-5)


def test_choice_of_blocks():
    scores = np.array([0.3, 0.1, 0.2, 0.05, np.nan])
    assert structured.shortgpt_blocks(scores, 2) == [1, 3]
    assert structured.shortgpt_blocks(scores, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        structured.shortgpt_blocks(scores, 5)
    assert structured.reverse_blocks(6, 2) == [3, 4]
    with pytest.raises(ValueError):
        structured.reverse_blocks(3, 3)


@pytest.mark.parametrize("architecture", ["qwen3", "qwen2", "llama"])
def test_removed_blocks_reload_with_right_layer_count_and_cache(tiny_model_factory, tmp_path, architecture):
    path = tiny_model_factory(architecture=architecture)
    model = load_model(path)
    kept = [decoder_layers(model)[i] for i in (0, 2)]
    structured.remove_blocks(model, [1, 3])
    assert list(decoder_layers(model)) == kept
    model.config.use_cache = True
    model.save_pretrained(tmp_path)
    reloaded = load_model(tmp_path)
    assert reloaded.config.num_hidden_layers == len(decoder_layers(reloaded)) == 2
    if getattr(reloaded.config, "layer_types", None) is not None:
        assert len(reloaded.config.layer_types) == 2
    assert [layer.self_attn.layer_idx for layer in decoder_layers(reloaded)] == [0, 1]
    ids = torch.tensor([_samples(1, 12)[0]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, reloaded(input_ids=ids).logits, atol=1e-5)
        # incremental decoding through the KV cache (keyed by layer_idx) equals full recomputation
        cached = reloaded.generate(ids, max_new_tokens=4, do_sample=False, use_cache=True)
        full = reloaded.generate(ids, max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(cached, full)
