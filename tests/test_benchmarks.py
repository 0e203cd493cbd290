"""Benchmark loading, normalisation, choice shuffling and source checks."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.artifacts import read_provenance, read_table
from pipeline.data import benchmarks
from pipeline.data.benchmarks import BenchmarkError, load, preflight, render_question, resolve_definition
from pipeline.stages import benchmark_data

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
AIME = FIXTURES / "aime24.jsonl"
AMC = FIXTURES / "amc23.jsonl"


def made_up_mcq(count: int = 48) -> pd.DataFrame:
    """GPQA-shaped items (made up): the correct answer always sits in the first column."""
    return pd.DataFrame({
        "Record ID": [f"rec{i:03d}" for i in range(count)],
        "Question": [f"Which of these numbers equals {i} + 1?" for i in range(count)],
        "Correct Answer": [str(i + 1) for i in range(count)],
        "Incorrect Answer 1": [str(i + 2) for i in range(count)],
        "Incorrect Answer 2": [str(i + 3) for i in range(count)],
        "Incorrect Answer 3": [str(i + 4) for i in range(count)],
    })


GPQA_COLUMNS = {"id": "Record ID", "problem": "Question", "answer": "Correct Answer",
                "choices": "Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3"}


def test_jsonl_keeps_zero_padded_aime_answers():
    table = load("aime24", resolve_definition("aime24", {"file": str(AIME)}))
    assert list(table.columns) == ["id", "problem", "answer", "choices"]
    assert table["id"].tolist() == ["60", "67", "75"]
    assert table["answer"].tolist() == ["204", "025", "073"]
    assert table["choices"].isna().all()


def test_jsonl_column_mapping_and_float_answers():
    definition = resolve_definition("amc23", {"file": str(AMC), "columns": {"problem": "question"}})
    table = load("amc23", definition)
    assert table["answer"].tolist() == ["27.0", "36.0", "45.0"]  # as given; the number grader compares values
    assert table["problem"].iloc[0].startswith("Cities $A$ and $B$")


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_local_formats_with_column_mapping_and_limit(tmp_path, suffix):
    source = pd.DataFrame({"uid": ["a", "b", "c"], "question": ["1+1?", "2+2?", "3+3?"], "solution": ["02", "4", "6"]})
    path = tmp_path / f"bench.{suffix}"
    if suffix == "csv":
        source.to_csv(path, index=False)
    elif suffix == "parquet":
        source.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in source.to_dict("records")))
    definition = {"file": str(path), "grader": "integer", "limit": 2,
                  "columns": {"id": "uid", "problem": "question", "answer": "solution"}}
    table = load("custom", definition)
    assert table.to_dict("records") == [
        {"id": "a", "problem": "1+1?", "answer": "02", "choices": None},
        {"id": "b", "problem": "2+2?", "answer": "4", "choices": None},
    ]


def test_choices_from_several_columns(tmp_path):
    path = tmp_path / "mcq.parquet"
    made_up_mcq().to_parquet(path)
    table = load("gpqa_diamond", resolve_definition("gpqa_diamond", {"file": str(path), "columns": GPQA_COLUMNS}))
    first = table.iloc[0]
    assert first["id"] == "rec000" and list(first["choices"]) == ["1", "2", "3", "4"] and first["answer"] == "1"


def test_choices_as_a_list_column_with_a_correct_letter(tmp_path):
    path = tmp_path / "mcq.csv"
    pd.DataFrame({"q": ["Largest?", "Smallest?"], "options": [json.dumps(["1", "9", "5"]), json.dumps(["7", "3", "8"])],
                  "key": ["B", "b"]}).to_csv(path, index=False)
    definition = {"file": str(path), "grader": "choice",
                  "columns": {"problem": "q", "choices": "options", "correct": "key"}}
    table = load("quiz", definition)
    assert table["answer"].tolist() == ["9", "3"]
    assert table["id"].tolist() == ["0", "1"]  # the row position when the source has no id


def test_shuffle_spreads_the_correct_letter_and_is_reproducible(tmp_path):
    path = tmp_path / "mcq.parquet"
    made_up_mcq(48).to_parquet(path)
    table = load("gpqa_diamond", resolve_definition("gpqa_diamond", {"file": str(path), "columns": GPQA_COLUMNS}))
    rows = table.to_dict("records")
    for seed in (7, 11, 42):
        letters = Counter(render_question(row, seed)[1] for row in rows)
        assert set(letters) == set("ABCD")
        assert max(letters.values()) <= 24, letters  # never (nearly) all at one position
        assert min(letters.values()) >= 4, letters
    first = [render_question(row, 7) for row in rows]
    assert first == [render_question(row, 7) for row in rows]  # same (seed, id): same prompt
    assert first != [render_question(row, 11) for row in rows]  # another seed: another order
    for row, (text, gold, order) in zip(rows, first):
        shown = [row["choices"][i] for i in order]
        assert shown["ABCD".index(gold)] == row["answer"]
        assert f"\n{gold}) {row['answer']}\n" in text + "\n"


def test_math_question_renders_as_is():
    row = {"id": "60", "problem": "Find x.", "answer": "025", "choices": None}
    assert render_question(row, 7) == ("Find x.", "025", None)


@pytest.mark.parametrize("change, message", [
    ({"columns": {"problem": "nope"}}, "benchmarks.custom.columns.problem: the source has no column 'nope'"),
    ({"grader": "choice"}, "grader choice needs choices"),
    ({"columns": {"typo": "x"}}, "unknown column(s) typo"),
])
def test_mapping_problems_name_the_key(tmp_path, change, message):
    path = tmp_path / "b.jsonl"
    path.write_text('{"id": 1, "problem": "p", "answer": "1"}\n')
    definition = {"file": str(path), "grader": "integer", **change}
    with pytest.raises(BenchmarkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load("custom", definition)


def test_answer_must_be_one_of_the_choices(tmp_path):
    path = tmp_path / "mcq.jsonl"
    path.write_text(json.dumps({"id": "q1", "problem": "p", "answer": "5", "choices": ["1", "2", "3", "4"]}) + "\n")
    with pytest.raises(BenchmarkError, match="problem q1: the answer is not one of its choices"):
        load("mcq", {"file": str(path), "grader": "choice"})


def test_missing_file_names_the_config_key():
    with pytest.raises(BenchmarkError, match=r"benchmarks\.aime24\.file: missing\.jsonl does not exist"):
        load("aime24", resolve_definition("aime24", {"file": "missing.jsonl"}))
    assert "benchmarks.aime24.file" in preflight(resolve_definition("aime24", {"file": "missing.jsonl"}), "aime24")
    assert preflight(resolve_definition("aime24", {"file": str(AIME)}), "aime24") is None


def test_gated_data_set_says_how_to_get_access(monkeypatch):
    import datasets

    def gated(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError(
            "Dataset 'Idavidrein/gpqa' is a gated dataset on the Hub. You must be authenticated to access it.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(BenchmarkError) as error:
        load("gpqa_diamond", resolve_definition("gpqa_diamond", {}))
    text = str(error.value)
    assert "https://huggingface.co/datasets/Idavidrein/gpqa" in text and "accept its terms" in text
    assert "HF_TOKEN" in text and "hf auth login" in text and "benchmarks.gpqa_diamond.file" in text


def test_hub_sources_concatenate_configurations(monkeypatch):
    import datasets

    loaded = []

    def fake(repo, config_name, split, revision):
        loaded.append((repo, config_name, split, revision))
        return datasets.Dataset.from_dict({"question": [f"{config_name} q"], "answer": ["7"]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    table = load("aime25", resolve_definition("aime25", {"revision": "abc123"}))
    assert [c for _, c, _, _ in loaded] == ["AIME2025-I", "AIME2025-II"]
    assert all(r == "abc123" and s == "test" for _, _, s, r in loaded)
    assert table["id"].tolist() == ["0", "1"] and table["problem"].tolist() == ["AIME2025-I q", "AIME2025-II q"]


def test_preflight_offline_without_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    message = preflight(resolve_definition("math500", {}), "math500")
    assert message and "benchmarks.math500" in message and "HF_HUB_OFFLINE" in message


def test_stage_writes_table_with_provenance(tmp_path):
    from pipeline.core.config import load as load_config
    from pipeline.core.slices import benchmark_slice

    config = load_config(Path(__file__).parent / "configs" / "random_demo.yaml")
    config["benchmarks"]["gpqa_diamond"]["file"] = str(Path(__file__).parent.parent / "config/demo/mcq.jsonl")
    spec = benchmark_slice(config, "gpqa_diamond")
    out = tmp_path / "gpqa.parquet"
    assert benchmark_data.main(["--spec", json.dumps(spec), "--out", str(out)]) == 0
    table = read_table(out)
    assert len(table) >= 3 and all(len(c) == 4 for c in table["choices"])
    assert read_provenance(out)["config"] == spec


def test_arithmetic_benchmark_is_drawn_with_its_seed_and_graded_as_integers():
    from pipeline.data import arithmetic

    definition = benchmarks.resolve_definition("arith", {"arithmetic": {"problems": 200, "seed": 3}})
    assert definition["grader"] == "integer" and "hub" not in definition
    table = benchmarks.load("arith", definition)
    again = benchmarks.load("arith", benchmarks.resolve_definition("arith", {"arithmetic": {"problems": 200, "seed": 3}}))
    other = benchmarks.load("arith", benchmarks.resolve_definition("arith", {"arithmetic": {"problems": 200, "seed": 4}}))
    assert table.equals(again) and not table["problem"].equals(other["problem"])
    assert len(table) == 200 and table["id"].is_unique and table["choices"].isna().all()
    digits, operations = set(), set()
    for row in table.itertuples():
        a, op, b = re.fullmatch(r"What is (\d+) ([+-]) (\d+)\? Give only the final number, no words\.", row.problem).groups()
        assert int(row.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
        digits |= {len(a), len(b)}
        operations.add(op)
    assert digits == {1} and operations == set(arithmetic.OPERATIONS) == {"+", "-"}
    assert benchmarks.preflight(definition, "arith") is None  # generated: nothing to reach
