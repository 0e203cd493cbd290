"""Grading one answer: its verdict, and the keys of a graded row. The rules live in
pipeline.grading.extraction (steps 1 and 2 below) and pipeline.grading.comparison (step 3);
pipeline.grading.worker_pool grades many answers under hard time limits.

docs/GRADING.md states every rule with examples; in short, an answer segment is graded so:

1. find the answer statements: complete ``\\boxed{}`` / ``\\fbox{}`` boxes (adjacent boxes form
   one answer) and answer keywords ("Final Answer:", a "Final Answer" heading, "Answer:", "the
   answer is", "最终答案", "答案：") with the rest of their line, or the display block or line
   below a bare heading. The LAST statement that reads as an answer wins, so a box that the
   model retracts and follows with "Final Answer: X" is graded on X. With no statement, a short
   one-line segment is the answer itself ("bare"); anything else is `no_answer`.
2. read the statement: math answers keep their first math span (and the spans joined to it by
   "and", "or", commas) or the math run of a plain line, without a remark in words or
   parentheses; choice answers name the options the statement affirms ("(b)", "[C]", "Option
   C", "not B; it is C"), never the article "A" or the pronoun "I", or else the one option whose
   text the statement gives.
3. compare with the gold answer by grader:
   - integer / number: as exact decimals ("025" == 25, "1,000" == "1\\,000" == 1000); an answer
     that is not a plain number (``\\frac{50}{2}``) goes to math-verify;
   - math: unicode and typographic forms normalised (−, √, thin-space thousands, ``\\overline``
     repeating decimals), plain numbers compared exactly, else math-verify 0.9.0
     ``verify(gold, pred)`` (gold first: it is not symmetric);
   - choice: the one named option against the gold letter; two or more is a hedge.
   Percent: "X%" equals X and X/100 (either side); a plain 0.15 does not equal 15. Sets and
   intervals: a set in braces never equals an interval or an ordered pair; an inequality in one
   variable equals the interval it describes.

Status: correct | wrong | ambiguous (a multiple-choice hedge: never credited) | no_answer |
timeout. math-verify's own time limits use SIGALRM in ways that clash with ours, so they are
off; `worker_pool.grade_many` runs every answer in a worker process under a SIGALRM limit and kills (and
replaces) a worker that does not come back, as happens inside C code such as sympy's big-integer
arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.grading.comparison import judge
from pipeline.grading.extraction import extract

GRADERS = ("integer", "number", "math", "choice")
STATUSES = ("correct", "wrong", "ambiguous", "no_answer", "timeout")

# the columns that identify a graded row (one generated answer): the generations' keys
KEYS = ["model", "variant", "benchmark", "problem_id", "seed", "sample", "sample_seed", "budget", "wait_times"]
# special tokens (<|im_start|>answer) and thinking tags
_SPECIAL = re.compile(r"<\|[^|>]*\|>\w*|</?think>")


def prefix_tail(prefix: str) -> str:
    """The words a template put right before the answer ("Final Answer:"), without its special
    tokens and line breaks, which are not part of what the model answered."""
    return _SPECIAL.sub("", prefix).rsplit("\n", 1)[-1]


@dataclass(frozen=True)
class Verdict:
    status: str
    extracted: str | None
    rule: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


def grade_one(gold: str, answer: str, grader: str, choices: list[str] | None = None) -> Verdict:
    """Grade one answer segment in this process, without a time limit (see grade_many).
    `choices`: a multiple-choice question's options in the order shown (A, B, ...), so that an
    answer giving an option's text is read as that option."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    extracted, rule = extract(answer, grader, choices)
    if extracted is None:
        return Verdict("no_answer", None, None)
    return Verdict(judge(gold, extracted, grader, choices), extracted, rule)
