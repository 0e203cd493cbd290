"""Where a Wait in token ids and a Wait in text give the model other tokens, on real thinking text.

    python benchmarks/wait_paths.py            # both templates, Qwen's vocabulary, JSON figures

The workflow appends the Wait string's ids to the thinking's ids (under both wait rules, as s1's
evaluation harness does). s1's README example of budget forcing works in text instead: it
appends the round's decoded text and "Wait" to the prompt string, which vLLM tokenises again.
Taking every token boundary of the worked solutions in tests/fixtures/math500_solutions.jsonl as
the point where thinking ended, this counts how often the re-tokenised prompt holds other ids
than the id path, how often another number of tokens (and by how many), and how far back from
the Wait the first differing id lies. The tokenizer is Qwen's, built offline by
tests/qwen_vocab.py; docs/BUDGET_FORCING.md quotes the figures.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCE_ENDS = (".", "?", "!", ".$")


def thinking_text(bound, row: dict) -> str:
    """A solution as thinking: s1.1 writes a newline after `<|im_start|>think` (Qwen3's think_start has one)."""
    return ("" if bound.template.think_start.endswith("\n") else "\n") + row["solution"]


def paths(bound, prompt: list[int], thinking: list[int], wait: list[int]) -> tuple[list[int], list[int]]:
    """The prompt after a Wait: in ids (the workflow) and re-tokenised from text (s1's README)."""
    text = bound.decode(list(prompt) + list(thinking)) + bound.decode(wait)
    return list(prompt) + list(thinking) + list(wait), bound.encode(text)


def _tally() -> dict:
    return {"cuts": 0, "other_ids": 0, "other_count": 0, "changed_before_wait": 0}


def measure(bound, rows: list[dict]) -> dict:
    """Figures over every cut of every row's thinking, and over the cuts after a line break and
    after a sentence's end (where thinking tends to end by itself)."""
    groups = {"all": _tally(), "after_newline": _tally(), "sentence_end": _tally()}
    deltas, back, shapes = Counter(), Counter(), Counter()
    for row in rows:
        prompt = bound.prompt_ids(row["problem"])
        thinking = bound.encode(thinking_text(bound, row))
        for k in range(1, len(thinking) + 1):
            ids, text = paths(bound, prompt, thinking[:k], bound.wait_ids)
            end = bound.decode(thinking[:k])
            names = ["all"] + (["after_newline"] if end.endswith("\n") else []) + (
                ["sentence_end"] if end.endswith(SENTENCE_ENDS) else [])
            junction = len(prompt) + k  # where the Wait begins on the id path
            first = next((i for i, (a, b) in enumerate(zip(ids, text)) if a != b), min(len(ids), len(text)))
            for name in names:
                tally = groups[name]
                tally["cuts"] += 1
                tally["other_ids"] += ids != text
                tally["other_count"] += len(ids) != len(text)
                tally["changed_before_wait"] += ids != text and first < junction
            if ids != text:
                deltas[len(text) - len(ids)] += 1
                back[max(0, junction - first)] += 1
                shapes[" + ".join(repr(bound.decode([t])) for t in text[first:])] += 1
    return {**groups, "count_change": {str(d): n for d, n in sorted(deltas.items())},
            "tokens_back": {str(b): n for b, n in sorted(back.items())},
            "furthest_back": max(back, default=0),
            "text_path_tokens": dict(shapes.most_common(6))}  # the commonest re-tokenised junctions


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from pipeline.generation import templates
    from tests import qwen_vocab

    rows = [json.loads(line) for line in (ROOT / "tests" / "fixtures" / "math500_solutions.jsonl").open()]
    report = {}
    for name, family in (("s1", "qwen2.5"), ("qwen3", "qwen3")):
        with tempfile.TemporaryDirectory() as folder:  # loaded from a folder, as a model's tokenizer is
            qwen_vocab.save(family, folder)
            bound = templates.bind(templates.get(name), AutoTokenizer.from_pretrained(folder), folder, "Wait")
            report[name] = measure(bound, rows)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
