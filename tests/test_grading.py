"""Answer extraction and grading: rules, a labelled set of real answers, time limits, the stage."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipeline import grade
from pipeline.artifacts import read_table, write_table
from pipeline.grading import KILL_GRACE_S, STATUSES, as_letter, as_number, extract, grade_many, grade_one

CASES = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "grading_cases.jsonl").open()]


@pytest.mark.parametrize("text, grader, expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "math", ("\\frac{1}{2}", "boxed")),
    ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "math", ("\\left\\{ 1, 2 \\right\\}", "boxed")),
    ("\\boxed{3} first, then \\boxed{\\frac{a}{b^{2}}}", "math", ("\\frac{a}{b^{2}}", "boxed")),
    ("$x = \\boxed{2}$ or $x = \\boxed{-3}$", "math", ("2, -3", "boxed_multi")),
    ("\\fbox{7}", "integer", ("7", "boxed")),
    ("\\boxed 5.", "integer", ("5", "boxed")),
    ("**Final Answer:** 12 apples.", "integer", ("12 apples", "answer_line")),
    ("Thus the answer is $\\frac{3}{4}$.", "math", ("\\frac{3}{4}", "answer_line")),
    ("### Final Answer\n\n$42$", "integer", ("42", "answer_line")),
    ("The correct option is (B).", "choice", ("(B)", "answer_line")),
    (" 204", "integer", ("204", "bare")),
    ("We need the smallest n such that the sum exceeds 100, and", "integer", (None, None)),
    ("", "math", (None, None)),
])
def test_extraction_rules(text, grader, expected):
    assert extract(text, grader) == expected


def test_number_and_letter_readers():
    assert as_number("025") == 25 and as_number("27.0") == 27 and as_number("1,000") == 1000
    assert as_number("\\$18.90") == as_number("18.9") and as_number("90^\\circ") == 90
    assert as_number("x+1") is None and as_number("1, 2") is None
    assert [as_letter(t) for t in ("(C)", "**D**", "\\text{B}", "A) Nitrogen", "Option C", "c", "Carbon")] == \
        ["C", "D", "B", "A", "C", "C", None]


@pytest.mark.parametrize("gold, answer, grader", [
    ("025", "\\boxed{25}", "integer"), ("025", "Final Answer: 025", "integer"), ("073", "The answer is 73.", "integer"),
    ("27.0", "\\boxed{27}", "number"), ("27.0", "\\boxed{27.0}", "number"), ("3159.0", "\\boxed{3,159}", "number"),
])
def test_real_benchmark_answers(gold, answer, grader):
    assert grade_one(gold, answer, grader).status == "correct"


def test_labelled_set_is_graded_as_labelled():
    """Every labelled (gold, output) pair of the fixture, graded through the worker pool."""
    assert len(CASES) >= 200 and {c["expected"] for c in CASES} <= set(STATUSES)
    by_grader = {}
    for case in CASES:
        by_grader.setdefault(case["grader"], []).append(case)
    wrong = []
    for grader, cases in by_grader.items():
        verdicts = grade_many([(c["gold"], c["output"]) for c in cases], grader, timeout_s=10, workers=2)
        wrong += [(c, v) for c, v in zip(cases, verdicts) if v.status != c["expected"]]
    assert not wrong, "\n".join(f"{c['note']}: expected {c['expected']}, got {v}" for c, v in wrong)
    statuses = Counter(c["expected"] for c in CASES)
    assert statuses["correct"] >= 100 and statuses["wrong"] >= 100 and statuses["no_answer"] >= 5


def test_pathological_answer_times_out_in_a_worker_and_the_pool_goes_on():
    items = [("1", "\\boxed{10^{10^{10^{10}}}}"), ("2", "\\boxed{2}"), ("3", "Answer: 4")]
    started = time.monotonic()
    verdicts = grade_many(items, "math", timeout_s=1, workers=1)
    elapsed = time.monotonic() - started
    assert [v.status for v in verdicts] == ["timeout", "correct", "wrong"]
    assert verdicts[0].extracted == "10^{10^{10^{10}}}" and verdicts[0].rule == "boxed"
    assert elapsed < 1 + KILL_GRACE_S + 10  # the limit, the grace, one worker restart, start-up


def test_huge_and_deeply_nested_input_is_extracted_in_linear_time():
    nested = "\\boxed{" * 200_000 + "1"
    many = "\\boxed{1} is not it.\n" * 50_000
    started = time.monotonic()
    assert extract(nested, "math") == (None, None)
    assert extract(many, "math")[1] == "boxed"
    assert extract("Answer: " + "x" * 1_000_000, "math")[1] == "answer_line"
    assert extract("Answer:\n" * 200_000, "math") == ("Answer:", "answer_line")
    assert time.monotonic() - started < 5


def test_deep_nesting_is_wrong_not_a_crash():
    deep = "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 401
    assert grade_many([("1", deep)], "math", timeout_s=5, workers=1)[0].status in ("wrong", "timeout")


def test_grade_stage(tmp_path):
    keys = {"model": "m", "variant": "dense", "benchmark": "aime24", "seed": 7, "sample_seed": 1, "budget": 512}
    rows = [
        {**keys, "problem_id": "60", "sample": 0, "gold": "204", "answer_prefix": "\nFinal Answer:", "answer": " 204",
         "thinking_tokens": 512, "answer_tokens": 3, "hit_budget": True},
        {**keys, "problem_id": "67", "sample": 0, "gold": "025", "answer_prefix": "</think>\n\n",
         "answer": "So $\\boxed{25}$.", "thinking_tokens": 300, "answer_tokens": 9, "hit_budget": False},
        {**keys, "problem_id": "75", "sample": 0, "gold": "073", "answer_prefix": "</think>\n\n",
         "answer": "I could not", "thinking_tokens": 100, "answer_tokens": 4, "hit_budget": False},
    ]
    generations = tmp_path / "gen.parquet"
    write_table(pd.DataFrame(rows), generations)
    spec = {"benchmark": "aime24", "grader": "integer", "timeout_s": 5, "workers": 0}
    out = tmp_path / "grades.parquet"
    assert grade.main(["--generations", str(generations), "--spec", json.dumps(spec), "--out", str(out),
                       "--workers", "1"]) == 0
    table = read_table(out)
    assert table["status"].tolist() == ["correct", "correct", "wrong"]
    assert table["rule"].tolist() == ["answer_line", "boxed", "bare"]
    assert table["correct"].tolist() == [True, True, False]
    assert list(table.columns) == grade.KEYS + ["gold", "extracted", "rule", "status", "correct"] + grade.CARRIED
