"""Models read from disk one decoder block at a time: the same masks, memory let go."""

import shutil

import pandas as pd
import pytest
import torch

from pipeline.models import lazy_model
from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import stats
from pipeline.stages.masks import compute


def _samples(n=5, length=20):
    return torch.randint(0, 500, (n, length), generator=torch.Generator().manual_seed(3)).tolist()


def _resident(model) -> list[str]:
    """Names of decoder-block and embedding parameters that hold memory."""
    names = [n for n, p in model.named_parameters() if not p.is_meta]
    return [n for n in names if n.startswith(("model.layers.", "model.embed_tokens."))]


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("prune", [
    {"method": "wanda", "sparsity": 0.5},
    {"method": "sparsegpt", "sparsity": 0.5},
    {"method": "magnitude", "nm": "2:4"},
    {"method": "wanda", "sparsity": 0.3, "allocation": "owl", "owl": {"lambda": 0.08, "M": 5}},
])
def test_lazy_model_gives_the_same_masks_and_lets_blocks_go(tiny_model_factory, architecture, prune):
    path = tiny_model_factory(architecture=architecture, layers=3)
    spec = {"prune": prune, "device": "cpu"}
    eager = compute(load_model(path), spec, _samples())
    lazy = lazy_model.load_lazily(path)
    assert _resident(lazy) == []  # nothing of the blocks or embeddings read yet
    assert lazy.lm_head.weight.is_meta  # never needed to prune
    table = compute(lazy, spec, _samples())
    pd.testing.assert_frame_equal(table, eager)
    assert _resident(lazy) == []  # every block released once done


def test_sharded_checkpoint_and_statistics(tiny_model_factory, tmp_path):
    path = tiny_model_factory(architecture="llama", layers=3)
    sharded = tmp_path / "sharded"
    load_model(path).save_pretrained(sharded, max_shard_size="100KB")
    assert (sharded / "model.safetensors.index.json").exists()
    lazy = lazy_model.load_lazily(sharded)
    assert _resident(lazy) == []
    pd.testing.assert_frame_equal(stats.alphas(lazy), stats.alphas(load_model(path)))
    ours = stats.dense_activations(lazy, _samples())
    theirs = stats.dense_activations(load_model(path), _samples())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert _resident(lazy) == []


def test_checkpoint_without_safetensors_loads_whole(tiny_model_factory, tmp_path):
    path = tiny_model_factory(architecture="qwen3", layers=2)
    legacy = tmp_path / "legacy"
    shutil.copytree(path, legacy)
    for file in legacy.glob("*.safetensors"):
        file.unlink()
    torch.save(load_model(path).state_dict(), legacy / "pytorch_model.bin")
    with pytest.warns(UserWarning, match="reading the whole model"):
        model = lazy_model.load_lazily(legacy)
    assert not any(p.is_meta for p in model.parameters())
    spec = {"prune": {"method": "wanda", "sparsity": 0.5}, "device": "cpu"}
    pd.testing.assert_frame_equal(compute(model, spec, _samples()), compute(load_model(path), spec, _samples()))
