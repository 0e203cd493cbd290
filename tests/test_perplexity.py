"""Perplexity in non-overlapping windows."""

import json
import math

import torch

from pipeline.core.artifacts import read_table
from pipeline.models.models import load_model, load_tokenizer
from pipeline.stages import perplexity


def test_windows_and_value(tiny_model, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"word{i % 37} and {i}" for i in range(200)))
    tok = load_tokenizer(tiny_model)
    ids = tok(text.read_text())["input_ids"]
    chunks = perplexity.windows(text, tok, 64)
    assert len(chunks) == len(ids) // 64 and all(len(c) == 64 for c in chunks)
    assert sum(chunks, []) == ids[: 64 * len(chunks)]  # non-overlapping, in order, tail dropped
    model = load_model(tiny_model)
    with torch.no_grad():  # transformers' own mean loss per window; equal windows -> plain mean
        losses = [model(input_ids=torch.tensor([c]), labels=torch.tensor([c])).loss.item() for c in chunks]
    result = perplexity.perplexity(model, chunks)
    assert result["windows"] == len(chunks) and result["tokens"] == 63 * len(chunks)
    assert math.isclose(result["perplexity"], math.exp(sum(losses) / len(losses)), rel_tol=1e-5)


def test_stage_on_a_pruned_model_and_calibration_parquet(tiny_model, tmp_path):
    import numpy as np
    import pandas as pd

    from pipeline.core.artifacts import write_table

    cal = tmp_path / "cal.parquet"
    write_table(pd.DataFrame({"sample": [0, 1], "input_ids": [np.arange(1, 41, dtype=np.int32), np.arange(5, 25, dtype=np.int32)]}), cal)
    out = tmp_path / "ppl.parquet"
    perplexity.main(["--model", str(tiny_model), "--text", str(cal), "--spec", json.dumps({"dtype": "float32", "length": 32, "device": "cpu"}),
                     "--out", str(out)])
    row = read_table(out).iloc[0]
    assert list(read_table(out).columns) == ["perplexity", "tokens", "windows"]
    assert row.windows == 3 and row.tokens == 31 + 7 + 19  # 40 tokens -> 32 + 8; 20 tokens -> one window
    assert row.perplexity > 1


def test_labels_score_only_the_labelled_tokens(tiny_model):
    """With labels (the demo's held-out problems), only tokens whose label is not IGNORE count:
    the same as transformers' loss with those labels."""
    ids = list(range(5, 45))
    labels = [-100] * 25 + ids[25:]  # a prompt of 25 tokens, then what the model writes
    model = load_model(tiny_model)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
    result = perplexity.perplexity(model, [ids], labels=[labels])
    assert result["tokens"] == 15 and result["windows"] == 1
    assert math.isclose(result["perplexity"], math.exp(loss), rel_tol=1e-5)
    assert not math.isclose(result["perplexity"], perplexity.perplexity(model, [ids])["perplexity"], rel_tol=1e-3)


def test_stage_scores_the_demo_tasks_heldout_problems(tmp_path):
    """--text demo_task on the shipped demo model: thinking and answer of held-out problems."""
    from tests.workflow_util import ROOT

    out = tmp_path / "ppl.parquet"
    spec = {"dtype": "float32", "device": "cpu", "problems": 30, "seed": 2026, "task": {"min_terms": 1, "max_terms": 24}}
    perplexity.main(["--model", str(ROOT / "config" / "demo" / "chain-qwen3"), "--text", "demo_task",
                     "--spec", json.dumps(spec), "--out", str(out)])
    row = read_table(out).iloc[0]
    assert row["windows"] == 30
    # the trained model writes its chains almost surely: near 1, far below the prompt-led figure
    assert 1 < row["perplexity"] < 1.2, row["perplexity"]
