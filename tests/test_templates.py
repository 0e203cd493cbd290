"""Thinking templates on the tiny model's tokenizer: exact prompts, delimiters and stops."""

from __future__ import annotations

import json

import pytest

from pipeline.generation import templates


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_s1_prompt_uses_qwen25_system_and_think_start(tokenizer, tiny_model):
    bound = templates.bind(templates.get("s1"), tokenizer, tiny_model)
    assert bound.decode(bound.prompt_ids("What is 1+1?")) == (
        f"<|im_start|>system\n{templates.QWEN25_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n<|im_start|>think"
    )
    assert bound.think_end_id == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert bound.decode(bound.answer_ids(forced=False)) == "<|im_start|>answer"
    assert bound.decode(bound.answer_ids(forced=True)) == "\n<|im_start|>answer\nFinal Answer:"


def test_qwen3_prompt_think_tags_and_early_stop_recipe(tokenizer, tiny_model):
    bound = templates.bind(templates.get("qwen3"), tokenizer, tiny_model)
    assert bound.decode(bound.prompt_ids("Q")) == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    assert bound.think_end_id == think_end
    assert bound.think_stop_ids == sorted({think_end, tokenizer.eos_token_id})
    assert bound.think_stop_strings == []
    assert bound.decode(bound.answer_ids(forced=False)) == "</think>\n\n"
    forced = bound.decode(bound.answer_ids(forced=True))
    assert forced.startswith(templates.QWEN3_EARLY_STOP) and forced.endswith("</think>\n\nFinal Answer:")


def test_split_stop_on_ids(tokenizer, tiny_model):
    bound = templates.bind(templates.get("qwen3"), tokenizer, tiny_model)
    text = bound.encode("so the answer is 5")
    assert bound.split_stop(text + [bound.think_end_id]) == (len(text), "think_end")
    assert bound.split_stop(text + [tokenizer.eos_token_id]) == (len(text), "eos")


def test_generic_multi_token_delimiter_is_a_stop_string(tokenizer, tiny_model):
    delimiters = {"think_start": "<reason>", "think_end": "</reason>", "answer_start": "</reason>Answer:",
                  "forced_answer": "</reason>Final Answer:", "system_prompt": "Think first."}
    bound = templates.bind(templates.get("generic", delimiters), tokenizer, tiny_model)
    assert bound.think_end_id is None and bound.think_stop_strings == ["</reason>"]
    assert bound.decode(bound.prompt_ids("Q")).startswith("<|im_start|>system\nThink first.<|im_end|>")
    thinking = bound.encode("we sum 3 and 4")
    keep, kind = bound.split_stop(thinking + bound.encode("</reason>"))
    assert (keep, kind) == (len(thinking), "think_end")


def test_generic_needs_all_delimiters():
    with pytest.raises(templates.TemplateError, match="think_end"):
        templates.get("generic", {"think_start": "<r>", "answer_start": "a", "forced_answer": "b"})


def test_template_refused_when_tokenizer_lacks_its_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.train_from_iterator(["plain text only"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(templates.TemplateError, match="</think>"):
        templates.bind(templates.get("qwen3"), tokenizer)


def test_eos_ids_include_generation_config(tokenizer, tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [tokenizer.eos_token_id, 0]}))
    assert templates.eos_ids(tokenizer, tmp_path) == sorted({0, tokenizer.eos_token_id})
