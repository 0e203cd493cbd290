"""Thinking templates: how a model is prompted to think, and how its thinking is closed.

A template is four strings around the thinking, as the study's reference harness (s1's
evaluation code) lays them out:

    prompt = chat_template(system?, user) + think_start
    thinking ... ends at think_end (or EOS), or at the budget
    natural end   -> thinking + answer_start  + answer
    budget ran out -> thinking + forced_answer + answer

Families:
- s1 (s1.1 models, Qwen2.5 chat format): think_start `<|im_start|>think`; thinking stops at
  `<|im_start|>`; answer `<|im_start|>answer`, forced `\\n<|im_start|>answer\\nFinal Answer:`.
- qwen3: chat template with enable_thinking=True, think_start `<think>\\n`, stop at `</think>`;
  natural end appends `</think>\\n\\n`; a spent budget appends Qwen's own recipe: one sentence
  telling the model to answer now, `</think>\\n\\n`, then "Final Answer:".
- generic: the four strings (and an optional system prompt) from the model's `delimiters`.
- direct: a model that does not think (SmolLM2-Instruct, say): its own chat template, then the
  answer at once; the budget caps the answer and no Wait applies (docs/BUDGET_FORCING.md).

`bind(template, tokenizer)` turns the strings into token ids once; everything downstream works
in ids so that no prompt is ever re-tokenised. A stop delimiter that is a single token in the
tokenizer is matched as a token id, otherwise as a stop string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN3_EARLY_STOP = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the "
    "thinking directly now.\n"
)


class TemplateError(ValueError):
    """The template does not fit the model's tokenizer or configuration."""


@dataclass(frozen=True)
class Template:
    name: str
    think_start: str
    think_end: str
    answer_start: str
    forced_answer: str
    system_prompt: str | None = None
    chat_kwargs: dict = field(default_factory=dict)
    # tokens that must exist as single tokens in the tokenizer for this family
    special_tokens: tuple[str, ...] = ()
    thinks: bool = True  # False: no thinking phase; the reply is the answer (template direct)

    def delimiters(self) -> dict:
        return {"think_start": self.think_start, "think_end": self.think_end, "answer_start": self.answer_start,
                "forced_answer": self.forced_answer, "system_prompt": self.system_prompt}


S1 = Template(
    name="s1",
    think_start="<|im_start|>think",
    think_end="<|im_start|>",
    answer_start="<|im_start|>answer",
    forced_answer="\n<|im_start|>answer\nFinal Answer:",
    # s1.1 relies on Qwen2.5's default system prompt; giving it explicitly yields the same
    # prompt on a Qwen2.5 template and keeps it on tokenizers whose template lacks the default.
    system_prompt=QWEN25_SYSTEM,
    special_tokens=("<|im_start|>", "<|im_end|>"),
)

QWEN3 = Template(
    name="qwen3",
    think_start="<think>\n",
    think_end="</think>",
    answer_start="</think>\n\n",
    forced_answer=QWEN3_EARLY_STOP + "</think>\n\nFinal Answer:",
    chat_kwargs={"enable_thinking": True},
    special_tokens=("<think>", "</think>", "<|im_start|>", "<|im_end|>"),
)

DIRECT = Template(name="direct", think_start="", think_end="", answer_start="", forced_answer="", thinks=False)


def get(name: str, delimiters: dict | None = None) -> Template:
    """The template of a family; `generic` is built from the config's `delimiters`."""
    if name == "s1":
        return S1
    if name == "qwen3":
        return QWEN3
    if name == "direct":
        return DIRECT
    if name == "generic":
        delimiters = delimiters or {}
        needed = ("think_start", "think_end", "answer_start", "forced_answer")
        missing = [key for key in needed if not delimiters.get(key)]
        if missing:
            raise TemplateError(
                f"template generic needs delimiters {', '.join(missing)} under models.<model>.delimiters"
            )
        return Template(name="generic", system_prompt=delimiters.get("system_prompt"),
                        **{key: delimiters[key] for key in needed})
    raise TemplateError(f"unknown template {name!r}; choose s1, qwen3, generic or direct")


def eos_ids(tokenizer, model_dir: str | Path | None = None) -> list[int]:
    """End-of-sequence ids: the tokenizer's and those of generation_config.json (Qwen lists two)."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    path = Path(model_dir) / "generation_config.json" if model_dir else None
    if path is not None and path.exists():
        extra = json.loads(path.read_text()).get("eos_token_id")
        ids += extra if isinstance(extra, list) else [] if extra is None else [extra]
    return sorted(set(ids))


@dataclass(frozen=True)
class Bound:
    """A template in the token ids of one tokenizer."""

    template: Template
    tokenizer: object
    think_start_ids: list[int]
    answer_start_ids: list[int]
    forced_answer_ids: list[int]
    wait_ids: list[int]
    think_end_id: int | None  # set when think_end is one token
    eos_ids: list[int]

    @property
    def think_stop_ids(self) -> list[int]:
        return sorted({*self.eos_ids, *([self.think_end_id] if self.think_end_id is not None else [])})

    @property
    def think_stop_strings(self) -> list[str]:
        return [self.template.think_end] if self.think_end_id is None else []

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def prompt_ids(self, user_text: str) -> list[int]:
        """The model's own chat template with an open assistant turn, then think_start."""
        messages = [{"role": "user", "content": user_text}]
        if self.template.system_prompt:
            messages.insert(0, {"role": "system", "content": self.template.system_prompt})
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template.chat_kwargs
        )
        return self.encode(text) + self.think_start_ids

    def answer_ids(self, forced: bool) -> list[int]:
        return self.forced_answer_ids if forced else self.answer_start_ids

    def split_stop(self, ids: list[int]) -> tuple[int, str]:
        """For thinking that stopped by itself: how many leading ids are thinking, and why it
        stopped ("think_end" or "eos"). A stop string may share its first token with thinking
        text; that token is dropped with the delimiter (token ids cannot split it)."""
        if ids and ids[-1] in self.eos_ids and ids[-1] != self.think_end_id:
            return len(ids) - 1, "eos"
        if ids and ids[-1] == self.think_end_id:
            return len(ids) - 1, "think_end"
        end = self.template.think_end
        text = self.decode(ids)
        position = text.find(end)
        if position < 0:
            raise ValueError(f"thinking reported a stop but holds neither a stop id nor {end!r}")
        keep = len(ids)
        while keep and len(self.decode(ids[:keep])) > position:
            keep -= 1
        return keep, "think_end"


def bind(template: Template, tokenizer, model_dir: str | Path | None = None, wait_string: str = "Wait") -> Bound:
    """Encode a template for a tokenizer; refuse one whose delimiters the tokenizer lacks."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in template.special_tokens if token not in vocab]
    if missing:
        raise TemplateError(
            f"template {template.name} needs the tokens {', '.join(missing)}, which this model's tokenizer "
            f"lacks; choose the template of the model's family (s1, qwen3) or generic with its delimiters"
        )
    if getattr(tokenizer, "chat_template", None) is None:
        raise TemplateError("the model's tokenizer has no chat template; prompts are built from it")

    def encode(text: str, key: str) -> list[int]:
        ids = list(tokenizer.encode(text, add_special_tokens=False))
        if tokenizer.decode(ids, skip_special_tokens=False) != text:
            raise TemplateError(
                f"delimiter {key}={text!r} of template {template.name} does not survive this tokenizer "
                "(unknown characters?); change models.<model>.delimiters"
            )
        return ids

    end_ids = encode(template.think_end, "think_end")
    eos = eos_ids(tokenizer, model_dir)
    if not eos:
        raise TemplateError("the model's tokenizer defines no eos_token; the answer phase could not stop")
    return Bound(
        template=template,
        tokenizer=tokenizer,
        think_start_ids=encode(template.think_start, "think_start"),
        answer_start_ids=encode(template.answer_start, "answer_start"),
        forced_answer_ids=encode(template.forced_answer, "forced_answer"),
        wait_ids=encode(wait_string, "generation.wait.string") if wait_string else [],
        think_end_id=end_ids[0] if len(end_ids) == 1 else None,
        eos_ids=eos,
    )
