"""Answer extraction and grading: rules, a labelled set of real answers, time limits, the stage."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.artifacts import read_table, write_table
from pipeline.grading.answers import STATUSES, grade_one
from pipeline.grading.comparison import as_number, judge, normalise
from pipeline.grading.extraction import as_letter, extract, options_named
from pipeline.grading.worker_pool import KILL_GRACE_S, grade_many
from pipeline.stages import grade

CASES = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "grading_cases.jsonl").open()]
CLASSES = ("choice_hedge", "choice_words", "choice_forms", "choice_text", "last_statement", "heading_block", "remark",
           "no_answer", "chinese", "typography", "percent", "sets_intervals", "forms")


@pytest.mark.parametrize("text, grader, expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "math", ("\\frac{1}{2}", "boxed")),
    ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "math", ("\\left\\{ 1, 2 \\right\\}", "boxed")),
    ("\\boxed{3} first, then \\boxed{\\frac{a}{b^{2}}}", "math", ("\\frac{a}{b^{2}}", "boxed")),
    ("$x = \\boxed{2}$ or $x = \\boxed{-3}$", "math", ("2, -3", "boxed_multi")),
    ("\\fbox{7}", "integer", ("7", "boxed")),
    ("\\boxed 5.", "integer", ("5", "boxed")),
    ("**Final Answer:** 12 apples.", "integer", ("12", "answer_line")),
    ("Thus the answer is $\\frac{3}{4}$.", "math", ("\\frac{3}{4}", "answer_line")),
    ("### Final Answer\n\n$42$", "integer", ("42", "answer_line")),
    ("The correct option is (B).", "choice", ("(B)", "answer_line")),
    (" 204", "integer", ("204", "bare")),
    ("We need the smallest n such that the sum exceeds 100, and", "integer", (None, None)),
    ("", "math", (None, None)),
    # the last statement wins, whatever its form
    ("\\boxed{210}\n\nWait, that double counts. Final Answer: 204", "integer", ("204", "answer_line")),
    ("Final Answer: 32\n\nI forgot the empty set: \\boxed{33}", "integer", ("33", "boxed")),
    ("\\boxed{12}\n\nTo check that the answer is right, list the cases.", "integer", ("12", "boxed")),
    ("\\boxed{5}\n\nNote the answer is not 6.", "math", ("5", "boxed")),
    # a heading, then the block or line below it
    ("### Final Answer\n\n\\[\n\\frac{3}{4}\n\\]", "math", ("\\frac{3}{4}", "answer_line")),
    ("**Final Answer**\n$$\n2\\sqrt{5}\n$$", "math", ("2\\sqrt{5}", "answer_line")),
    ("### Final Answer\n\nThe minimum is $\\frac{3}{4}$.", "math", ("\\frac{3}{4}", "answer_line")),
    # a remark after the answer is not part of it
    ("Final Answer: 42 (the number of ordered pairs)", "math", ("42", "answer_line")),
    ("Final Answer: 15. This is the number of ways.", "math", ("15", "answer_line")),
    ("Final Answer: $\\frac{1}{2}$ (after simplifying)", "math", ("\\frac{1}{2}", "answer_line")),
    ("Final Answer: (3, \\frac{\\pi}{2})", "math", ("(3, \\frac{\\pi}{2})", "answer_line")),
    ("Final Answer: Evelyn", "math", ("Evelyn", "answer_line")),
    ("Final Answer: 1, 2, and 3", "math", ("1, 2, and 3", "answer_line")),
    # nothing after a forced "Final Answer:" is no answer, not the keyword taken as one
    ("Final Answer:", "integer", (None, None)),
    ("Final Answer: \\boxed{\\frac{1", "math", (None, None)),
    ("**Final Answer**\n\n", "math", (None, None)),
    # Chinese keywords
    ("所以最终答案是 204。", "integer", ("204", "answer_line")),
    ("答案：B", "choice", ("B", "answer_line")),
    # choices: boxed letters on consecutive lines are one hedge; a lone letter closing the segment
    ("\\boxed{B}\n\\boxed{C}", "choice", ("B, C", "boxed_multi")),
    ("After eliminating the others:\n\n**C**", "choice", ("C", "last_line")),
    ("I think the most likely answer involves comparing the bond energies", "choice", (None, None)),
])
def test_extraction_rules(text, grader, expected):
    assert extract(text, grader) == expected


def test_number_and_letter_readers():
    assert as_number("025") == 25 and as_number("27.0") == 27 and as_number("1,000") == 1000
    assert as_number("\\$18.90") == as_number("18.9") and as_number("90^\\circ") == 90
    assert as_number("x+1") is None and as_number("1, 2") is None
    assert [as_letter(t) for t in ("(C)", "**D**", "\\text{B}", "A) Nitrogen", "Option C", "c", "Carbon")] == \
        ["C", "D", "B", "A", "C", "C", None]
    assert as_number("1\\,000") == 1000 and as_number("\u22125") == -5 and as_number("2\u2009500") == 2500


@pytest.mark.parametrize("statement, choices, named", [
    ("B or C", None, ["B", "C"]), ("BC", None, ["B", "C"]), ("B (or possibly C)", None, ["B", "C"]),
    ("A careful reading gives C", None, ["C"]), ("I think it is B", None, ["B"]), ("A is correct", None, ["A"]),
    ("(a)", None, ["A"]), ("[C]", None, ["C"]), ("not B; it is C", None, ["C"]), ("C, not B", None, ["C"]),
    ("B, because A fails", None, ["B"]), ("C (B fails the test)", None, ["C"]), ("I cannot be sure, but C", None, ["C"]),
    ("E", ["w", "x", "y", "z"], []), ("Nitrogen", ["Nitrogen", "Oxygen"], ["A"]),
    ("the electron", ["Electron", "Proton"], ["A"]), ("Nitrogen or Oxygen", ["Nitrogen", "Oxygen"], ["A", "B"]),
    ("$3x$", ["3x^2", "x^2", "3x"], ["C"]), ("36", ["12", "24", "36"], ["C"]), ("Carbon monoxide", ["Carbon dioxide"], []),
])
def test_options_named(statement, choices, named):
    assert options_named(statement, choices) == named


def test_hedges_are_ambiguous_and_never_correct():
    for answer in ("The answer is B or C.", "\\boxed{B, C}", "\\boxed{B} \\boxed{C}", "Final Answer: (B) or (C)"):
        for gold in "BC":
            assert grade_one(gold, answer, "choice").status == "ambiguous"
    assert judge("B", "B or C", "choice") == "ambiguous"


@pytest.mark.parametrize("text, expected", [
    ("1\\,000\\,000", "1000000"), ("10{,}000", "10000"), ("10\u2009000", "10000"), ("10 000", "10000"),
    ("0.\\overline{3}", "\\frac{1}{3}"), ("0.1\\overline{6}", "\\frac{1}{6}"), ("-3.\\overline{12}", "-\\frac{103}{33}"),
    ("0.333...", "\\frac{1}{3}"), ("2√2", "2\\sqrt{2}"), ("√(x+1)", "\\sqrt{x+1}"), ("\u22125", "-5"), ("3π", "3\\pi"),
    ("3.14...", "3.14..."), ("1, 2", "1, 2"),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize("gold, answer, status", [
    # percent: "X%" equals X and X/100 on the other side; a plain 0.15 is not 15
    ("15", "15\\%", "correct"), ("0.15", "15\\%", "correct"), ("15\\%", "15", "correct"), ("15\\%", "0.15", "correct"),
    ("0.15", "15", "wrong"), ("15\\%", "1.5", "wrong"),
    # sets and intervals: a set is never an interval or a pair; an inequality is its interval
    ("\\{1, 2\\}", "1, 2", "correct"), ("\\{1, 2\\}", "[1, 2]", "wrong"), ("[1, 2]", "\\{1, 2\\}", "wrong"),
    ("(1, 2)", "\\{1, 2\\}", "wrong"), ("(-\\infty, 3]", "x \\le 3", "correct"), ("(-\\infty, 3]", "x < 3", "wrong"),
    ("(1, 5]", "1 < x \\leq 5", "correct"), ("(2, 7)", "7 > x > 2", "correct"), ("[2, \\infty)", "x \\geq 2", "correct"),
])
def test_percent_and_interval_policies(gold, answer, status):
    assert judge(gold, answer, "math") == status


@pytest.mark.parametrize("gold, answer, grader", [
    ("025", "\\boxed{25}", "integer"), ("025", "Final Answer: 025", "integer"), ("073", "The answer is 73.", "integer"),
    ("27.0", "\\boxed{27}", "number"), ("27.0", "\\boxed{27.0}", "number"), ("3159.0", "\\boxed{3,159}", "number"),
])
def test_real_benchmark_answers(gold, answer, grader):
    assert grade_one(gold, answer, grader).status == "correct"


def test_labelled_set_is_graded_as_labelled():
    """Every labelled (gold, output) pair of the fixture, graded through the worker pool."""
    assert len(CASES) >= 550 and {c["expected"] for c in CASES} <= set(STATUSES)
    by_grader = {}
    for case in CASES:
        by_grader.setdefault(case["grader"], []).append(case)
    wrong = []
    for grader, cases in by_grader.items():
        items = [(c["gold"], c["output"], c.get("choices")) for c in cases]
        verdicts = grade_many(items, grader, timeout_s=10, workers=2)
        wrong += [(c, v) for c, v in zip(cases, verdicts) if v.status != c["expected"]]
    print(f"labelled set: {len(CASES) - len(wrong)} of {len(CASES)} graded as labelled")
    assert not wrong, "\n".join(f"{c['note']}: expected {c['expected']}, got {v}" for c, v in wrong)
    statuses = Counter(c["expected"] for c in CASES)
    assert statuses["correct"] >= 100 and statuses["wrong"] >= 100 and statuses["no_answer"] >= 15
    assert statuses["ambiguous"] >= 15
    # every class of answer a careful grader reads differently from a naive one has its cases
    classes = Counter(c["class"] for c in CASES if "class" in c)
    assert {name: classes[name] >= 6 for name in CLASSES} == dict.fromkeys(CLASSES, True), classes
    assert sum(1 for c in CASES if c.get("choices")) >= 15


def test_pathological_answer_times_out_in_a_worker_and_the_pool_goes_on():
    items = [("1", "\\boxed{10^{10^{10^{10}}}}"), ("2", "\\boxed{2}"), ("3", "Answer: 4")]
    started = time.monotonic()
    verdicts = grade_many(items, "math", timeout_s=1, workers=1)
    elapsed = time.monotonic() - started
    assert [v.status for v in verdicts] == ["timeout", "correct", "wrong"]
    assert verdicts[0].extracted == "10^{10^{10^{10}}}" and verdicts[0].rule == "boxed"
    # the limit, the grace, one worker restart and start-up (slow on loaded cores), not a hang
    assert elapsed < 1 + KILL_GRACE_S + 30


def test_huge_and_deeply_nested_input_is_extracted_in_linear_time():
    nested = "\\boxed{" * 200_000 + "1"
    many = "\\boxed{1} is not it.\n" * 50_000
    started = time.process_time()  # this process's CPU time: other load on the cores does not count
    assert extract(nested, "math") == (None, None)
    assert extract(many, "math")[1] == "boxed"
    assert extract("Answer: " + "x" * 1_000_000, "math")[1] == "answer_line"
    assert extract("Answer:\n" * 200_000, "math") == (None, None)  # a keyword is no answer to another
    assert extract("Final Answer: " * 100_000, "choice") == (None, None)
    assert time.process_time() - started < 5  # linear: about 1 s; a quadratic pass takes minutes


def test_deep_nesting_is_wrong_not_a_crash():
    deep = "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 401
    assert grade_many([("1", deep)], "math", timeout_s=5, workers=1)[0].status in ("wrong", "timeout")


def test_grade_stage(tmp_path):
    keys = {"model": "m", "variant": "dense", "benchmark": "aime24", "seed": 7, "sample_seed": 1, "budget": 512,
            "wait_times": 0}
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


def test_grade_stage_reads_option_text_in_the_order_shown(tmp_path):
    """Multiple choice: the benchmark table and each row's choice_order give the options as the
    prompt showed them, so an answer naming an option's text is graded as that option."""
    keys = {"model": "m", "variant": "dense", "benchmark": "mcq", "seed": 7, "sample_seed": 1, "budget": 512,
            "wait_times": 0, "thinking_tokens": 100, "answer_tokens": 4, "hit_budget": False,
            "answer_prefix": "\nFinal Answer:"}
    benchmark = pd.DataFrame({"id": ["q1", "q2"], "problem": ["gas?", "particle?"], "answer": ["Nitrogen", "Electron"],
                              "choices": [["Nitrogen", "Oxygen", "Argon"], ["Electron", "Proton", "Neutron"]]})
    # q1 shown as (Argon, Nitrogen, Oxygen): gold B; q2 shown as (Proton, Neutron, Electron): gold C
    rows = [
        {**keys, "problem_id": "q1", "sample": 0, "gold": "B", "choice_order": [2, 0, 1], "answer": " Nitrogen"},
        {**keys, "problem_id": "q1", "sample": 1, "gold": "B", "choice_order": [2, 0, 1], "answer": " Argon"},
        {**keys, "problem_id": "q2", "sample": 0, "gold": "C", "choice_order": [1, 2, 0], "answer": " B or C"},
        {**keys, "problem_id": "q2", "sample": 1, "gold": "C", "choice_order": [1, 2, 0], "answer": ""},
    ]
    generations, data, out = tmp_path / "gen.parquet", tmp_path / "mcq.parquet", tmp_path / "grades.parquet"
    write_table(pd.DataFrame(rows), generations)
    write_table(benchmark, data)
    spec = json.dumps({"benchmark": "mcq", "grader": "choice", "timeout_s": 5, "workers": 0})
    assert grade.main(["--generations", str(generations), "--benchmark", str(data), "--spec", spec,
                       "--out", str(out), "--workers", "1"]) == 0
    assert read_table(out)["status"].tolist() == ["correct", "wrong", "ambiguous", "no_answer"]
    # without the options the text cannot be matched: an answer, but not a correct one
    grades = grade.grade_table(pd.DataFrame(rows), "choice", 5, 1)
    assert grades["status"].tolist() == ["wrong", "wrong", "ambiguous", "no_answer"]
    with pytest.raises(ValueError, match="not in the benchmark table"):
        grade.shown_choices(pd.DataFrame(rows), benchmark.iloc[:1])


def test_a_bare_equation_is_graded_by_the_value_it_states():
    """Small models answer arithmetic as an equation ("9 + 8 = 17", "4 - 1 is 4."): the value on
    the right is graded, never the restated question on the left."""
    cases = [("17", "9 + 8 = 17", "correct"), ("18", "9 + 8 = 17", "wrong"), ("3", "4 - 1 is 4.", "wrong"),
             ("2", "3 - 1 is 2.", "correct"), ("23", "So $m + n = 23$.", "no_answer")]
    for gold, answer, status in cases:
        assert grade_one(gold, answer, "integer").status == status, (gold, answer)
