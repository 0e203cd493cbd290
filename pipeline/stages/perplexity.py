"""Stage: perplexity of a model (base or pruned) on a text, in non-overlapping windows.

    python -m pipeline.stages.perplexity --model MANIFEST_OR_CHECKPOINT --text FILE.txt|CAL.parquet
        --spec JSON --out results/perplexity/M/V.parquet

`spec`: {dtype, length (window, default 2048), device (auto|cpu|cuda), ...}; other keys are
stored as provenance only. A text file is tokenised as one stream and cut into windows of
`length` tokens (a shorter tail is dropped, as in the published wikitext-2 numbers); each
sequence of a calibration Parquet is cut into windows of at most `length` tokens. Perplexity =
exp(mean next-token loss over all predicted tokens). `--text demo_task` (a trained demo model)
scores `problems` held-out worked problems of spec["task"], each its own window, on the tokens
the model writes (thinking, end of thinking, answer; pipeline.generation.demo_transcripts), not the
prompt or the text the workflow inserts.
Output: one row with perplexity, tokens (predicted tokens), windows.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from pipeline.core import config
from pipeline.core.artifacts import read_table, spec_argument, write_table
from pipeline.models.models import load_model, load_tokenizer, resolve_device


def wikitext2_test() -> str:
    """The wikitext-2 test split joined by blank lines, as the published perplexities use it."""
    from datasets import load_dataset

    from pipeline.data.calibration import WIKITEXT2, _hub

    data = _hub(lambda: load_dataset(*WIKITEXT2, split="test"), "wikitext-2 (test)")
    return "\n\n".join(data["text"])


def windows(text_path, tokenizer, length: int) -> list[list[int]]:
    if str(text_path) == "wikitext2":
        return _cut(tokenizer(wikitext2_test())["input_ids"], length, "wikitext-2 test")
    path = Path(text_path)
    if not path.is_file():
        raise FileNotFoundError(f"perplexity text {path} does not exist")
    if path.suffix in (".parquet", ".pq"):
        out = []
        for ids in read_table(path)["input_ids"]:
            ids = [int(i) for i in ids]
            out += [ids[i : i + length] for i in range(0, len(ids), length)]
        return [w for w in out if len(w) > 1]
    return _cut(tokenizer(path.read_text(encoding="utf-8"))["input_ids"], length, str(path))


def _cut(ids: list[int], length: int, what: str) -> list[list[int]]:
    out = [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
    if not out:
        raise ValueError(f"{what} holds {len(ids)} tokens, less than one window of {length}; lower perplexity.length or give more text")
    return out


def demo_transcripts(tokenizer, spec: dict) -> tuple[list[list[int]], list[list[int]]]:
    """The held-out worked problems as windows, and their labels (IGNORE where not scored)."""
    from pipeline.generation import demo_transcripts as transcripts
    from pipeline.generation import templates

    bound = templates.bind(templates.QWEN3, tokenizer)
    pairs = transcripts.heldout(bound, spec.get("task", {}), int(spec.get("problems", 200)), int(spec.get("seed", 0)))
    return [ids for ids, _ in pairs], [labels for _, labels in pairs]


def perplexity(model, chunks: list[list[int]], device: str = "cpu", labels: list[list[int]] | None = None) -> dict:
    """exp(mean loss) over each window's next tokens; with `labels`, only where a label is not
    IGNORE (-100)."""
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for i, ids in enumerate(chunks):
            x = torch.tensor([ids], device=device)
            target = x[0, 1:] if labels is None else torch.tensor(labels[i][1:], device=device)
            logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, target, reduction="sum", ignore_index=-100).item()
            tokens += int((target != -100).sum())
            print(f"window {i + 1}/{len(chunks)}", file=sys.stderr, flush=True)
    return {"perplexity": math.exp(nll / tokens), "tokens": tokens, "windows": len(chunks)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest or checkpoint folder")
    parser.add_argument("--text", required=True, help="a text file, a calibration Parquet, wikitext2 (its test split) or demo_task")
    parser.add_argument("--spec", required=True, help="JSON (or @file): {dtype, length, device}")
    parser.add_argument("--out", required=True, help="results/perplexity/M/V.parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "perplexity", spec)  # the workflow's own refusals, before loading
    device = resolve_device(spec.get("device", "auto"))
    model = load_model(args.model, dtype=spec.get("dtype", "float32"), device=device)
    tokenizer = load_tokenizer(args.model)
    if args.text == "demo_task":
        chunks, labels = demo_transcripts(tokenizer, spec)
    else:
        chunks, labels = windows(args.text, tokenizer, int(spec.get("length", 2048))), None
    result = perplexity(model, chunks, device, labels)
    write_table(pd.DataFrame([result]), args.out, spec)
    print(f"perplexity {result['perplexity']:.4f} over {result['tokens']} tokens in {result['windows']} windows")


if __name__ == "__main__":
    from pipeline.core.environment import lean_process

    lean_process()
    main()
