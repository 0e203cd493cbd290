"""Stage: train the demo's small reasoning model from scratch on the synthetic task.

    python -m pipeline.stages.train_demo --spec JSON --out results/models/NAME/trained

`spec` is {"demo": the model's shape and `train` settings, "task": pipeline.data.demo_task's
settings}. The model learns to think in the Qwen3 format (`<think>` ... `</think>`, then the
answer in \\boxed{}) exactly as `pipeline.generation.templates` prompts it, and to answer with its best
guess when budget forcing cuts its thinking. Training is deterministic for a seed (one thread
order: the same machine gives the same weights). The folder gets the weights, the tokenizer,
`training.parquet` (step, loss, tokens, seconds) for the report and `training.json` (the settings
it was made with, see pipeline.core.slices.shipped_model).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from pipeline.core import config, config_schema, slices, specs
from pipeline.core.artifacts import atomic_dir, spec_argument, write_table
from pipeline.data import demo_task
from pipeline.generation.demo_transcripts import IGNORE, example
from pipeline.generation import templates
from pipeline.models import demo_model

TRAIN_DEFAULTS = config_schema.schema_defaults("models.*.demo.train")


def tokenizer_corpus(task: dict, seed: int) -> list[str]:
    """Text the tokenizer is trained on: worked problems of both forms and the templates' strings."""
    rng = demo_task.stream(seed, "tokenizer")
    lines = [templates.QWEN3_EARLY_STOP, "Final Answer: The answer is \\boxed{7}.", "Wait",
             templates.QWEN25_SYSTEM]
    for _ in range(400):
        problem = demo_task.sample(rng, task)
        thinking, answer = demo_task.solution_text(problem)
        options = "\n".join(f"{letter}) {text}" for letter, text in
                            zip(demo_task.CHOICE_LETTERS, demo_task.choices(problem, rng)))
        lines += [problem.text, options, thinking, answer]
    return lines


def batches(bound, task: dict, settings: dict, pool: int = 8):
    """An endless stream of padded batches (ids, labels, attention mask) from the train stream.
    Examples are drawn `pool` batches at a time and batched by length, so little is padding;
    the batches of a pool then come in random order."""
    import torch

    rng = demo_task.stream(settings["seed"], "train")
    pad, size = bound.tokenizer.pad_token_id, settings["batch"]
    while True:
        rows = sorted((example(bound, demo_task.sample(rng, task), rng, settings) for _ in range(pool * size)),
                      key=lambda row: len(row[0]))
        groups = [rows[start : start + size] for start in range(0, len(rows), size)]
        rng.shuffle(groups)
        for group in groups:
            width = max(len(ids) for ids, _ in group)
            ids = torch.full((len(group), width), pad, dtype=torch.long)
            labels = torch.full((len(group), width), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for row, (seq, lab) in enumerate(group):
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, : len(lab)] = torch.tensor(lab)
                mask[row, : len(seq)] = 1
            yield ids, labels, mask


def train(spec: dict, out_dir: str | Path, progress=print) -> list[dict]:
    """Train the demo model of `spec` and save it to `out_dir`; return the loss history."""
    import torch

    demo = {**demo_model.DEFAULTS, **{k: v for k, v in spec["demo"].items() if k not in ("train", "shipped")}}
    settings = {**TRAIN_DEFAULTS, **spec["demo"].get("train", {})}
    task = {**demo_task.DEFAULTS, **spec.get("task", {})}
    torch.manual_seed(settings["seed"])
    tokenizer = demo_model.build_tokenizer(demo["vocab"], corpus=tokenizer_corpus(task, settings["seed"]))
    model = demo_model.make_model(demo, tokenizer)
    bound = templates.bind(templates.QWEN3, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"],
                                  betas=(0.9, 0.98))
    steps, warmup = settings["steps"], settings["warmup"]

    def rate(step: int) -> float:  # linear warm-up, cosine decay to a tenth
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    history, start, tokens = [], time.perf_counter(), 0
    stream = batches(bound, task, settings)
    for step in range(steps):
        ids, labels, mask = next(stream)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        tokens += int(mask.sum())
        value = loss.item()
        history.append({"step": step + 1, "loss": value, "tokens": tokens, "seconds": time.perf_counter() - start})
        if (step + 1) % 25 == 0 or step + 1 == steps:
            progress(f"step {step + 1}/{steps}  loss {value:.4f}  {tokens} tokens  "
                     f"{time.perf_counter() - start:.0f} s")
    model.eval()
    demo_model.save(model, tokenizer, out_dir, {**demo, "train": settings, "task": task})
    return history


def record(spec: dict, history: list[dict]) -> dict:
    """The training record kept beside the weights: the settings (and their hash, which decides
    whether a shipped copy stands for a config's model), the final loss and where it was made."""
    import platform

    import torch

    settings = slices.training_settings(spec)
    last = [row["loss"] for row in history[-25:]]
    return {"settings": settings, "settings_hash": specs.spec_hash(settings), "steps": len(history),
            "final_loss": sum(last) / len(last), "seconds": round(history[-1]["seconds"], 1),
            "machine": platform.machine(), "torch": torch.__version__}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="JSON (or @file): {demo: {..., train: {...}}, task: {...}}")
    parser.add_argument("--out", required=True, help="folder for the trained model")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--plot", help="stem of the training-loss figure (.png and .svg are written)")
    args = parser.parse_args(argv)
    import pandas as pd
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "train_demo", spec)  # the workflow's own refusals, before training
    with atomic_dir(out) as partial:
        rows = train(spec, partial, progress=lambda line: print(line, flush=True))
        (Path(partial) / slices.SHIPPED_RECORD).write_text(json.dumps(record(spec, rows), indent=2, sort_keys=True) + "\n")
        history = pd.DataFrame(rows)
        write_table(history, Path(partial) / "training.parquet", spec=spec, seed=spec["demo"]["train"].get("seed"))
    if args.plot:
        from pipeline.reporting.plots import training_loss

        training_loss(history, spec.get("name", out.parent.name), args.plot)
    print(f"trained: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
