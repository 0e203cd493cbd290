"""Mixture-of-experts models: experts pruned like any other matrix, with every unstructured
method and allocation, and exported checkpoints whose realised sparsity is the target."""

import contextlib
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pipeline.core.artifacts import read_table
from pipeline.models.lazy_model import load_lazily, loaded
from pipeline.models.models import decoder_layers, load_model
from pipeline.prune import allocation, driver, experts, support
from pipeline.stages import export, masks
from tests import tiny_models
from tests.test_export import _calibration, _spec

MOE = ("qwen3_moe", "mixtral", "gpt_oss")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = {}

    def make(architecture, **overrides):
        key = (architecture, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = tiny_models.build(tmp_path_factory.mktemp(architecture), architecture, **overrides)
        return cache[key]

    return make


def _samples(n=4, length=24, seed=1):
    return torch.randint(0, 500, (n, length), generator=torch.Generator().manual_seed(seed)).tolist()


def _experts_per_block(model):
    return sum(experts.num_experts(m) for _, m in experts.fused_experts(decoder_layers(model)[0]))


@pytest.mark.parametrize("architecture", MOE)
def test_calibration_forward_is_the_models_forward(built, architecture):
    """The experts' calibration forward (every token or only routed ones) gives the model's own
    output: only the statistics' tokens differ."""
    model = load_model(built(architecture))
    model.set_experts_implementation("eager")
    ids = torch.tensor(_samples(2))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        for all_tokens in (True, False):
            seen = {}
            with contextlib.ExitStack() as stack:
                for block in decoder_layers(model):
                    stack.enter_context(experts.calibrating(block, lambda n, x: seen.setdefault(n, x.shape[0]), all_tokens))
                got = model(input_ids=ids).logits
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            gate_inputs = [v for k, v in seen.items() if k.endswith("up_proj")]
            if all_tokens:  # every expert saw every token
                assert set(gate_inputs) == {ids.numel()}
            else:  # top-2 of 4 experts: the experts' tokens add up to twice the tokens
                assert sum(gate_inputs) == 2 * ids.numel()


@pytest.mark.parametrize("architecture", ["qwen3_moe", "mixtral"])
def test_lazy_load_fuses_per_expert_checkpoints(built, architecture):
    """transformers saves experts one tensor per expert (Mixtral as w1/w2/w3 under
    block_sparse_moe); the lazy load fuses them as the ordinary load does."""
    path = built(architecture)
    full, lazy = load_model(path), load_lazily(path)
    assert any(p.is_meta for p in decoder_layers(lazy)[0].parameters())  # really lazy
    for b, block in enumerate(decoder_layers(lazy)):
        with loaded(block):
            ours = dict(block.state_dict())
            for name, tensor in decoder_layers(full)[b].state_dict().items():
                assert torch.equal(ours[name], tensor), (b, name)


@pytest.mark.parametrize("architecture", MOE)
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_every_method_prunes_every_expert(built, architecture, method, nm):
    path = built(architecture)
    model = load_lazily(path)
    names = [n for n, _ in driver.matrices(decoder_layers(load_model(path))[0])]
    assert sum(".experts." in n for n in names) == 3 * _experts_per_block(load_model(path))
    target = {(b, n): 0.5 for b in range(len(decoder_layers(model))) for n in names}
    rows = masks.prune_unstructured(model, method, target, nm, _samples())
    assert [(r["block"], r["name"]) for r in rows] == list(target)
    for row in rows:
        assert support.realised_problem(row) is None, row["name"]
        if nm or method != "sparsegpt":
            assert row["achieved_sparsity"] == 0.5, row["name"]


@pytest.mark.parametrize("allocation_name", ["owl", "alphapruning", "layerif"])
def test_allocations_cover_the_experts(built, tmp_path, allocation_name):
    """Each allocation gives every matrix, experts included, a target; the parameter-weighted
    mean over the model is the requested sparsity; the realised sparsity follows the target."""
    path = built("qwen3_moe")
    prune = {"method": "wanda", "sparsity": 0.5, "allocation": allocation_name,
             "owl": {"M": 5, "lambda": 0.08}, "alphapruning": {"eps": 0.3},
             "layerif": {"e1": 0.05, "e2": 0.4, "direction": "original"}}
    model = load_model(path)
    table = masks.compute(model, _spec(prune), _samples(6))
    assert table.name.str.contains(".experts.").sum() == 3 * _experts_per_block(model) * len(decoder_layers(model))
    size = table.rows * table.cols
    assert allocation.weighted_mean(table.target_sparsity, size) == pytest.approx(0.5, abs=1e-6)
    assert table.target_sparsity.nunique() > 1  # the allocation did allocate
    assert (table.achieved_sparsity - table.target_sparsity).abs().max() <= 1 / table.cols.min()


def _checkpoint_zeros(folder) -> dict[str, float]:
    out = {}
    for file in folder.glob("*.safetensors"):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                if ".layers." in key and len(f.get_slice(key).get_shape()) >= 2:
                    t = f.get_tensor(key)
                    out[key] = float((t == 0).float().mean())
    return out


@pytest.mark.parametrize("architecture", ["qwen3_moe", "mixtral"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_masks_stage_and_export_realise_the_target(built, tmp_path, capsys, architecture, method):
    """The stage's log states realised sparsity per kind; the exported safetensors have the
    target sparsity in every expert (read from the files), routers dense; the checkpoint
    reloads in transformers and computes what the pruned model computes."""
    path = built(architecture)
    out = tmp_path / "masks.parquet"
    masks.main(["--model", str(path), "--calibration", str(_calibration(tmp_path / "cal.parquet")),
                "--spec", json.dumps(_spec({"method": method, "sparsity": 0.5})), "--out", str(out)])
    log = capsys.readouterr().err
    assert "attention 0.5" in log and "experts 0.5" in log and "dense MLP" not in log
    ckpt = export.export(path, out, {"dtype": "float32", "variant": "v"}, tmp_path / "ckpt")
    zeros = _checkpoint_zeros(ckpt)
    expert_keys = [k for k in zeros if ".experts." in k]
    assert len(expert_keys) == 3 * 4 * 3  # blocks x experts x (gate, up, down), one tensor each
    for key in expert_keys + [k for k in zeros if "_proj" in k and "experts" not in k]:
        assert abs(zeros[key] - 0.5) <= 1 / 32, (key, zeros[key])
    routers = [k for k in zeros if k.endswith("gate.weight")]
    assert routers and all(zeros[k] == 0 for k in routers)
    pruned = load_model(path)
    export.apply_masks(pruned, read_table(out))
    reloaded = load_model(ckpt)
    ids = torch.tensor(_samples(1))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, pruned(input_ids=ids).logits)


def test_support_refuses_what_cannot_reach_the_target():
    config = json.loads(tiny_models.config("qwen3_moe").to_json_string())
    assert support.problems(config, {"method": "sparsegpt", "sparsity": 0.5, "nm": "2:4"}) == []
    odd = {**config, "moe_intermediate_size": 30}
    (msg,) = support.problems(odd, {"method": "wanda", "nm": "2:4"}, "variant v")
    assert "variant v" in msg and "(moe_intermediate_size) = 30" in msg
    assert support.problems(odd, {"method": "shortgpt", "layers": 1}) == []
    quant = {**config, "quantization_config": {"quant_method": "mxfp4"}}
    (msg,) = support.problems(quant, {"method": "magnitude", "sparsity": 0.5})
    assert "mxfp4" in msg and "dequantized" in msg
    (msg,) = support.problems(config, {"method": "wanda", "nm": "4:2"})
    assert "0 < N < M" in msg
    (msg,) = support.problems(config, {"method": "magnitude", "sparsity": 1.0})
    assert "outside [0, 1)" in msg


def test_realised_sparsity_guard():
    row = {"block": 0, "name": "mlp.experts.1.down_proj", "rows": 64, "cols": 32, "target_sparsity": 0.5}
    assert support.realised_problem({**row, "achieved_sparsity": 0.5 + 1 / 64}) is None
    problem = support.realised_problem({**row, "achieved_sparsity": 0.75})
    assert "mlp.experts.1.down_proj" in problem and "0.7500" in problem


def test_stage_refuses_before_any_work(built, tmp_path, capsys):
    path = built("qwen3_moe", moe_intermediate_size=30)
    with pytest.raises(SystemExit):
        masks.main(["--model", str(path), "--spec", json.dumps(_spec({"method": "magnitude", "nm": "2:4"})),
                    "--out", str(tmp_path / "m.parquet")])
    assert "(moe_intermediate_size) = 30" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_dead_columns_stop_the_stage(built, tmp_path):
    """SparseGPT zeroes the weights of input columns that never activate: with a quarter of
    the experts' inputs dead and 10% asked, more zeros than asked. The stage refuses to write
    such a table."""
    path = built("qwen3_moe")
    model = load_model(path)
    with torch.no_grad():  # 16 of the 64 input columns of every expert's gate/up are always zero
        decoder_layers(model)[1].post_attention_layernorm.weight[:16] = 0
    model.save_pretrained(tmp_path / "dead")
    with pytest.raises(SystemExit, match="realised sparsity"):
        masks.main(["--model", str(tmp_path / "dead"), "--calibration", str(_calibration(tmp_path / "cal.parquet")),
                    "--spec", json.dumps(_spec({"method": "sparsegpt", "sparsity": 0.1})),
                    "--out", str(tmp_path / "m.parquet")])
    assert not (tmp_path / "m.parquet").exists()


def test_layerif_influence_counts_expert_parameters(built):
    from pipeline.prune import influence

    model = load_model(built("qwen3_moe"))
    weights = influence.sublayer_weights(model)
    assert all(any(w.dim() == 3 for w in block["mlp"]) for block in weights)
    scores = influence.layer_influence(model, _samples(2, 12), _samples(2, 12, seed=2))
    assert scores.shape == (3, 2) and np.isfinite(scores).all()
