"""The block-by-block driver: statistics, sequential semantics, architectures."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import driver, scores
from pipeline.stages.masks import compute, prune_unstructured


def _samples(n=6, length=24, seed=0, vocab=500):
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed)).tolist()


def _linear_inputs(model, samples, block):
    """Inputs of every linear of `block` in a plain full-model forward, concatenated over tokens."""
    got = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: got.setdefault(n, []).append(a[0].reshape(-1, a[0].shape[-1])))
             for n, m in driver.linears(decoder_layers(model)[block])]
    with torch.no_grad():
        for ids in samples:  # one sequence at a time: independent of the driver's batching
            model(input_ids=torch.tensor([ids]), use_cache=False)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v).double() for n, v in got.items()}


def _unpack(row):
    bits = np.unpackbits(np.frombuffer(row["zeroed"], np.uint8), count=row["rows"] * row["cols"])
    return torch.from_numpy(bits.astype(bool).reshape(row["rows"], row["cols"]))


def test_wanda_masks_equal_the_formula_block_by_block(tiny_model):
    """Block 0 from the dense model; block b from the model whose blocks < b carry our masks
    (sequential semantics), each computed by a plain forward pass."""
    samples = _samples()
    ours = compute(load_model(tiny_model), {"prune": {"method": "wanda", "sparsity": 0.5}, "device": "cpu"}, samples)
    rows = {(r["block"], r["name"]): r for r in ours.to_dict("records")}
    reference = load_model(tiny_model)
    layers = decoder_layers(reference)
    for b in range(len(layers)):
        inputs = _linear_inputs(reference, samples, b)
        for name, module in driver.linears(layers[b]):
            r = (inputs[name] ** 2).sum(0) / len(samples)
            metric = module.weight.double().abs() * r.sqrt()
            k = int(metric.shape[1] * 0.5)
            expected = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, metric.argsort(dim=1, stable=True)[:, :k], True)
            assert torch.equal(_unpack(rows[(b, name)]), expected), (b, name)
        with torch.no_grad():  # prune block b as ours did before moving on
            for name, module in driver.linears(layers[b]):
                module.weight.masked_fill_(_unpack(rows[(b, name)]), 0)


def test_statistics_and_shared_inputs(tiny_model):
    samples = _samples(n=5, length=17)
    model = load_model(tiny_model)
    seen = {}

    def keep(b, block, stats):
        seen[b] = stats

    driver.run(model, samples, collect="hessian", on_block=keep, propagate="dense", batch_tokens=40)
    inputs = _linear_inputs(load_model(tiny_model), samples, 1)
    for name, H in seen[1].items():
        x = inputs[name]
        assert torch.allclose(H.double(), 2 / len(samples) * x.T @ x, rtol=1e-4, atol=1e-4), name
        assert torch.equal(H, H.T), name  # accumulated above the diagonal, mirrored at the end
    s = seen[0]
    assert s["self_attn.q_proj"] is s["self_attn.k_proj"] is s["self_attn.v_proj"]
    assert s["mlp.gate_proj"] is s["mlp.up_proj"] and s["mlp.down_proj"] is not s["mlp.up_proj"]


def test_variable_length_samples_and_batching_agree(tiny_model):
    samples = _samples(n=3, length=20) + _samples(n=4, length=9, seed=1)
    target = None
    out = []
    for batch_tokens in (1, 10_000):
        model = load_model(tiny_model)
        target = {(b, n): 0.4 for b, blk in enumerate(decoder_layers(model)) for n, _ in driver.linears(blk)}
        out.append(prune_unstructured(model, "wanda", target, None, samples, batch_tokens=batch_tokens))
    assert len(driver.batches(samples, 1)) == 7 and len(driver.batches(samples, 10_000)) == 2
    assert all(a["zeroed"] == b["zeroed"] for a, b in zip(*out))


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_methods_on_each_architecture(tiny_model_factory, architecture, method):
    path = tiny_model_factory(architecture=architecture, layers=2)
    model = load_model(path)
    spec = {"prune": {"method": method, "sparsity": 0.5}, "device": "cpu"}
    checkpoint = [f.read_bytes() for f in sorted(Path(path).glob("*.safetensors"))]
    table = compute(model, spec, _samples(n=4))
    # pruned in place, yet the weights memory-mapped from the checkpoint never write through
    assert [f.read_bytes() for f in sorted(Path(path).glob("*.safetensors"))] == checkpoint
    target = {(b, n): 0.5 for b, blk in enumerate(decoder_layers(model)) for n, _ in driver.linears(blk)}
    again = prune_unstructured(load_model(path), method, target, None, _samples(n=4))
    assert [r["zeroed"] for r in again] == list(table.zeroed)
    names = {n for n, _ in driver.linears(decoder_layers(model)[0])}
    assert len(table) == 2 * len(names) == 14 and "lm_head" not in set(table.name)
    tolerance = 2 * 1 / (table.rows.min() * 64) if method == "sparsegpt" else 0  # one extra per 128 columns
    assert (table.achieved_sparsity - 0.5).abs().max() <= tolerance + 1e-9
    for row in table.to_dict("records"):  # the model itself carries the masks
        weight = decoder_layers(model)[row["block"]].get_submodule(row["name"]).weight
        assert (weight[_unpack(row)] == 0).all()
    dense = load_model(path)
    assert torch.equal(model.lm_head.weight, dense.lm_head.weight)
    assert torch.equal(model.model.embed_tokens.weight, dense.model.embed_tokens.weight)


def test_dense_pass_stops_after_the_last_linear_input(tiny_model):
    """Statistics with the dense pass cut short equal those of full passes, and the last
    linear (the MLP down projection) runs only for the first batch."""
    samples = _samples(n=6, length=20)
    runs = {}
    for cut in (True, False):
        model = load_model(tiny_model)
        calls = []
        for block in decoder_layers(model):
            block.mlp.down_proj.register_forward_hook(lambda *_: calls.append(1))
        observe = None if cut else (lambda *_: None)  # observing needs the dense outputs
        runs[cut] = ([{k: v.clone() for k, v in stats.items()}
                      for _, _, stats in driver.walk(model, samples, collect="hessian", observe=observe,
                                                     batch_tokens=40)], len(calls))
    (cut, cut_calls), (full, full_calls) = runs[True], runs[False]
    blocks, batches = len(cut), len(driver.batches(samples, 40))
    assert batches == 3 and full_calls == 2 * blocks * batches - batches  # dense + pruned re-runs but the last
    assert cut_calls == full_calls - blocks * (batches - 1)
    for a, b in zip(cut, full):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hessian_slabs_sum_to_the_full_product():
    """Accumulated on and above the diagonal slabs, rescaled as a running mean, mirrored at the
    end: the full symmetric 2/n sum of x^T x (several slabs wide)."""
    torch.manual_seed(0)
    width, seen = 2 * driver.GRAM_CHUNK + 88, 0
    H = torch.zeros(width, width)
    xs = [torch.randn(37, width) for _ in range(3)]
    for x in xs:
        n, seen = seen, seen + 1
        driver._scale_upper(H, n / seen)
        driver._add_gram(H, (2 / seen) ** 0.5 * x)
    driver._mirror(H)
    full = sum(x.double().T @ x.double() for x in xs) * 2 / len(xs)
    assert torch.equal(H, H.T)
    assert torch.allclose(H.double(), full, rtol=1e-5, atol=1e-4)
