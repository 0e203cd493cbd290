"""Calibration sampling: windows, determinism, sources, errors, the stage's table."""

import json
import random

import pytest

from pipeline.core.artifacts import read_provenance, read_table
from pipeline.data import calibration
from pipeline.models.models import load_tokenizer
from pipeline.stages import calibration as calibration_stage


@pytest.fixture
def long_docs(tmp_path):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rng = random.Random(1)
    docs = [" ".join(rng.choice(words) for _ in range(n)) for n in (5, 300, 400, 8, 250)]
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path, docs


def _spec(path, **kw):
    return {"source": "file", "path": str(path), "samples": 6, "length": 32, "seed": 0, **kw}


def test_file_documents_give_windows_of_long_documents(tiny_model, long_docs):
    path, docs = long_docs
    tok = load_tokenizer(tiny_model)
    seqs = calibration.sample(_spec(path), tok)
    assert len(seqs) == 6 and all(len(s) == 32 for s in seqs)
    long_ids = [tok(d)["input_ids"] for d in docs if len(tok(d)["input_ids"]) > 32]
    for s in seqs:  # each window lies inside one long document
        assert any(any(ids[i : i + 32] == s for i in range(len(ids) - 31)) for ids in long_ids)
    assert calibration.sample(_spec(path), tok) == seqs
    assert calibration.sample(_spec(path, seed=1), tok) != seqs


def test_short_documents_are_joined_into_a_stream(tiny_model, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("\n\n".join(f"line {i} of the text" for i in range(60)))
    tok = load_tokenizer(tiny_model)
    seqs = calibration.sample(_spec(path, length=16), tok)
    stream = tok("\n\n".join(f"line {i} of the text" for i in range(60)))["input_ids"]
    assert all(any(stream[i : i + 16] == s for i in range(len(stream) - 15)) for s in seqs)


def test_errors_name_the_problem(tiny_model, tmp_path):
    tok = load_tokenizer(tiny_model)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        calibration.sample(_spec(tmp_path / "missing.txt"), tok)
    (tmp_path / "tiny.txt").write_text("too short")
    with pytest.raises(ValueError, match="lower length"):
        calibration.sample(_spec(tmp_path / "tiny.txt"), tok)
    (tmp_path / "empty.txt").write_text("\n\n \n")
    with pytest.raises(ValueError, match="holds no text"):
        calibration.sample(_spec(tmp_path / "empty.txt"), tok)


def test_hub_failure_says_what_to_do(tiny_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_TOKEN.*source: file"):
        calibration.sample({"source": "c4", "samples": 1, "length": 8, "seed": 0}, load_tokenizer(tiny_model))


def test_reference_sampling_order():
    """c4 draws a document index, then a window start, per sample (Wanda's get_c4)."""
    docs = ["a", "b c d e f g h", "i", "j k l m n o p q r"]
    seqs = calibration.from_documents(docs, str.split, 3, 4, random.Random(0))
    rng, expected = random.Random(0), []
    for _ in range(3):
        while len(ids := docs[rng.randint(0, 3)].split()) <= 4:
            pass
        start = rng.randint(0, len(ids) - 5)
        expected.append(ids[start : start + 4])
    assert seqs == expected


def test_pg19_chunks():
    book = "\n\n".join(["p" * 300, "q" * 300, "r" * 500, "s" * 2500, "t" * 10])
    chunks = calibration.pg19_chunks([book], 1024)
    assert all(len(c) <= 1024 for c in chunks)
    assert chunks[0] == "p" * 300 + "\n\n" + "q" * 300
    assert "".join(c.replace("\n\n", "") for c in chunks) == book.replace("\n\n", "")


def test_stage_writes_int32_sequences(tiny_model, long_docs, tmp_path):
    path, _ = long_docs
    spec = {"model": {"name": "tiny"}, "calibration": _spec(path, samples=3)}
    out = tmp_path / "cal.parquet"
    calibration_stage.main(["--model", str(tiny_model), "--spec", json.dumps(spec), "--out", str(out)])
    table = read_table(out)
    assert list(table.columns) == ["sample", "input_ids"] and list(table["sample"]) == [0, 1, 2]
    assert table["input_ids"][0].dtype.name == "int32" and len(table["input_ids"][0]) == 32
    assert read_provenance(out)["config"] == spec
