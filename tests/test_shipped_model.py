"""The demo's shipped model: config/demo.yaml prunes the checkpoint kept in the repository while
its recorded settings are the config's, and train_demo at those settings makes a model as good
(its quality, not its bits: training is deterministic only per machine)."""

from __future__ import annotations

import copy
import json

import pytest

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline.data import demo_task
from pipeline.generation import templates
from tests.workflow_util import ROOT

SHIPPED = ROOT / "config" / "demo" / "chain-qwen3"


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo's files are relative to the workflow's folder
    return cfg.load(ROOT / "config" / "demo.yaml")


def chain_accuracy(folder, problems: int = 60, seed: int = 0) -> float:
    """Share of held-out problems whose greedy thinking ends on the right number: the whole chain
    computed with no budget cut (the demo's dense accuracy at its largest budget, without sampling)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    bound = templates.bind(templates.QWEN3, tokenizer)
    rng, right = demo_task.stream(seed, "quality"), 0
    for _ in range(problems):
        problem = demo_task.sample(rng)
        ids = torch.tensor([bound.prompt_ids(problem.text)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2 * problem.n + 4,
                                 do_sample=False, eos_token_id=bound.think_stop_ids, pad_token_id=tokenizer.pad_token_id)
        thinking = bound.decode(out[0, ids.shape[1]:]).split(templates.QWEN3.think_end)[0].strip()
        right += thinking.endswith(f"a{problem.answer}")
    return right / problems


def test_the_demo_uses_the_shipped_model_made_at_its_settings(demo):
    source = slices.model_source(demo, "chain-qwen3")
    assert slices.shipped_model(source) == SHIPPED.relative_to(ROOT)
    assert slices.uses_shipped_model(demo, "chain-qwen3") and not slices.trains_demo(demo, "chain-qwen3")
    record = json.loads((SHIPPED / slices.SHIPPED_RECORD).read_text())
    assert record["settings"] == slices.training_settings(source)
    assert record["steps"] == demo["models"]["chain-qwen3"]["demo"]["train"]["steps"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training.parquet"):
        assert (SHIPPED / name).is_file(), name
    # about a megabyte in the repository: the weights in float32 and the tokenizer
    assert sum(path.stat().st_size for path in SHIPPED.iterdir()) < 2_000_000


@pytest.mark.parametrize("change", ["steps", "task", "shape"])
def test_a_changed_setting_trains_anew(demo, change):
    config = copy.deepcopy(demo)
    if change == "steps":
        config["models"]["chain-qwen3"]["demo"]["train"]["steps"] += 1
    elif change == "task":
        config["demo_task"]["max_terms"] -= 1
    else:
        config["models"]["chain-qwen3"]["demo"]["intermediate"] *= 2
    assert slices.shipped_model(slices.model_source(config, "chain-qwen3")) is None
    assert slices.trains_demo(config, "chain-qwen3")


def test_shipped_without_training_or_folder_is_refused(demo):
    config = cfg.load_yaml(ROOT / "config" / "demo.yaml")
    config["models"]["chain-qwen3"]["demo"]["shipped"] = "config/demo/no-such-model"
    with pytest.raises(cfg.ConfigError, match=r"models\.chain-qwen3\.demo\.shipped: config/demo/no-such-model is not a folder"):
        cfg.prepare(config)
    del config["models"]["chain-qwen3"]["demo"]["train"]
    with pytest.raises(cfg.ConfigError, match=r"models\.chain-qwen3\.demo\.shipped: only a trained demo model"):
        cfg.prepare(config)


def test_the_shipped_model_computes_whole_chains():
    # documented: 0.996 at budget 64 with sampling; greedy on other problems, with a margin for
    # another CPU's float order
    assert chain_accuracy(SHIPPED) >= 0.9


def test_retraining_at_the_documented_settings_makes_a_model_as_good(demo, tmp_path):
    """About two minutes on 2 cores: the demo's training, checked by what the model can do."""
    from pipeline.stages import train_demo

    source = slices.model_source(demo, "chain-qwen3")
    history = train_demo.train(source, tmp_path / "model", progress=lambda line: None)
    record = train_demo.record(source, history)
    shipped = json.loads((SHIPPED / slices.SHIPPED_RECORD).read_text())
    assert record["settings_hash"] == shipped["settings_hash"]
    # the loss curve ends where the shipped model's did, give or take the machine's float order
    assert record["final_loss"] <= 1.5 * shipped["final_loss"] + 0.05, (record["final_loss"], shipped["final_loss"])
    assert chain_accuracy(tmp_path / "model") >= 0.85
