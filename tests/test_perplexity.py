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
