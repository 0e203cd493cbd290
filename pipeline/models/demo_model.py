"""Build a tiny random reasoning model offline: python -m pipeline.models.demo_model OUT_DIR

A byte-level BPE tokenizer trained on the spot, carrying the real special tokens of the Qwen
chat format (<|im_start|>, <|im_end|>, <|endoftext|>, <think>, </think>) and a Qwen-style chat
template; a Qwen3, Qwen2 or Llama model with random weights. Everything the workflow does to a
real model (calibration, pruning, export, vLLM generation) runs on it in seconds. Head size
must be at least 32 for vLLM's CPU attention.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# A Qwen-style chat template with the same tokens and layout as the real ones; enable_thinking
# behaves as Qwen3's (false inserts an empty think block). default_system mimics Qwen2.5.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{% elif default_system %}"
    "<|im_start|>system\n" + QWEN25_SYSTEM + "<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

# init_std 0.3 rather than transformers' 0.02: near-uniform next-token distributions would make
# every variant sample the same tokens under the same seed, hiding what pruning changes.
DEFAULTS = {"layers": 4, "hidden": 64, "heads": 2, "kv_heads": 1, "intermediate": 128,
            "vocab": 512, "architecture": "qwen3", "seed": 0, "init_std": 0.3}
POSITIONS = 4096  # every demo model's context (max_position_embeddings)


def _corpus(seed: int, lines: int = 3000) -> list[str]:
    """Text that looks like math reasoning, so BPE learns digits, LaTeX and words."""
    rng = random.Random(seed)
    words = ("the of and to a in is that we so find let then sum number answer since thus "
             "therefore wait because total each value equation solve integer prime triangle "
             "circle area probability problem step first second final check compute").split()
    latex = ["\\frac{", "\\sqrt{", "\\boxed{", "\\cdot", "\\pi", "^2", "_{n}", "$", "}", "(", ")", "=", "+", "-"]
    out = []
    for _ in range(lines):
        parts = []
        for _ in range(rng.randint(5, 25)):
            r = rng.random()
            parts.append(rng.choice(words) if r < 0.6 else rng.choice(latex) if r < 0.8 else str(rng.randint(0, 999)))
        out.append(" ".join(parts))
    out += ["Final Answer: The answer is \\boxed{42}.", "Answer: (C)", "A) B) C) D)", "Wait, let me check."]
    return out


def build_tokenizer(vocab: int, seed: int = 0, default_system: bool = False, corpus: list[str] | None = None):
    """A byte-level BPE tokenizer trained on `corpus`, whose digits stay single tokens as in
    Qwen's tokenizers; by default on math-like text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.pre_tokenizer = byte_level if corpus is None else pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    core.train_from_iterator(corpus or _corpus(seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
    )
    template = CHAT_TEMPLATE
    if default_system:
        template = "{% set default_system = true %}" + template
    else:
        template = "{% set default_system = false %}" + template
    tokenizer.chat_template = template
    return tokenizer


def make_model(spec: dict, tokenizer):
    """A model of `spec` (see DEFAULTS) with random weights, for `tokenizer`."""
    import torch
    import transformers

    spec = {**DEFAULTS, **spec}
    arch = spec["architecture"]
    common = dict(
        vocab_size=len(tokenizer), hidden_size=spec["hidden"], intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"], max_position_embeddings=POSITIONS,
        tie_word_embeddings=False, bos_token_id=None, initializer_range=spec["init_std"],
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    if arch == "qwen3":
        config = transformers.Qwen3Config(head_dim=spec.get("head_dim") or spec["hidden"] // spec["heads"], **common)
        model_class = transformers.Qwen3ForCausalLM
    elif arch == "qwen2":
        config = transformers.Qwen2Config(**common)
        model_class = transformers.Qwen2ForCausalLM
    elif arch == "llama":
        config = transformers.LlamaConfig(**common)
        model_class = transformers.LlamaForCausalLM
    else:
        raise ValueError(f"unknown demo architecture {arch!r}; choose qwen3, qwen2 or llama")
    torch.manual_seed(spec["seed"])
    model = model_class(config).to(torch.float32)
    model.generation_config.eos_token_id = common["eos_token_id"]
    return model


def save(model, tokenizer, out_dir: str | Path, spec: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "demo_spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return out_dir


def build(out_dir: str | Path, spec: dict | None = None) -> Path:
    """Write a tiny random model and its tokenizer to `out_dir`; return the folder."""
    spec = {**DEFAULTS, **(spec or {})}
    tokenizer = build_tokenizer(spec["vocab"], spec["seed"], default_system=(spec["architecture"] == "qwen2"))
    return save(make_model(spec, tokenizer), tokenizer, out_dir, spec)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--spec", default="{}", help="JSON: layers, hidden, heads, kv_heads, intermediate, vocab, architecture, seed")
    args = parser.parse_args(argv)
    print(build(args.out_dir, json.loads(args.spec)))


if __name__ == "__main__":
    main()
