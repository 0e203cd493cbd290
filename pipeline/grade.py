"""Grade every answer of one generations file.

    python -m pipeline.grade --generations results/generations/M/V/B.parquet --spec JSON \\
        --out results/grades/M/V/B.parquet [--workers N]

The spec is `config.grading_slice`: {benchmark, grader, timeout_s, workers}; --workers caps the
worker processes (Snakemake passes the job's threads). The graded text is the answer segment as
the model saw it: the words the template put before the answer (a forced "Final Answer:",
without special tokens) followed by the generated answer. One row per generation row: the
generation keys, gold, extracted, rule, status (correct | wrong | no_answer | timeout), correct,
thinking_tokens, answer_tokens, hit_budget.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import pandas as pd

from pipeline import config
from pipeline.artifacts import read_table, spec_argument, write_table
from pipeline.grading import available_cores, grade_many

KEYS = ["model", "variant", "benchmark", "problem_id", "seed", "sample", "sample_seed", "budget"]
CARRIED = ["thinking_tokens", "answer_tokens", "hit_budget"]
# special tokens (<|im_start|>answer) and thinking tags
_SPECIAL = re.compile(r"<\|[^|>]*\|>\w*|</?think>")
REQUIRED = KEYS + ["gold", "answer"] + CARRIED


def prefix_tail(prefix: str) -> str:
    """The words a template put right before the answer ("Final Answer:"), without its special
    tokens and line breaks, which are not part of what the model answered."""
    return _SPECIAL.sub("", prefix).rsplit("\n", 1)[-1]


def grade_table(generations: pd.DataFrame, grader: str, timeout_s: float, workers: int) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in generations.columns]
    if missing:
        raise ValueError(f"generations lack column(s) {', '.join(missing)}; regenerate them with pipeline.generate")
    answers = generations["answer"].fillna("")
    if "answer_prefix" in generations:
        answers = generations["answer_prefix"].fillna("").map(prefix_tail) + answers
    items = list(zip(generations["gold"].astype(str), answers))
    verdicts = grade_many(items, grader, timeout_s=timeout_s, workers=workers)
    out = generations[KEYS + ["gold"]].copy()
    out["extracted"] = [v.extracted for v in verdicts]
    out["rule"] = [v.rule for v in verdicts]
    out["status"] = [v.status for v in verdicts]
    out["correct"] = [v.correct for v in verdicts]
    for column in CARRIED:
        out[column] = generations[column].to_numpy()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", required=True, help="generations Parquet (pipeline.generate)")
    parser.add_argument("--spec", required=True, help="config.grading_slice as JSON (or @file)")
    parser.add_argument("--out", required=True, help="output grades Parquet")
    parser.add_argument("--workers", type=int, default=None,
                        help="cap on worker processes (the job's threads); default: the spec's workers")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "grade", spec)  # the workflow's own refusals, before loading
    workers = spec.get("workers", 0) or available_cores()
    if args.workers:
        workers = min(workers, args.workers)
    generations = read_table(args.generations)
    started = time.monotonic()
    grades = grade_table(generations, spec["grader"], spec["timeout_s"], workers)
    seconds = time.monotonic() - started
    write_table(grades, args.out, spec)
    counts = grades["status"].value_counts().to_dict()
    rules = grades["rule"].fillna("none").value_counts().to_dict()
    rate = len(grades) / max(seconds, 1e-9)
    print(f"{spec['benchmark']} ({spec['grader']}): {len(grades)} answers graded with {workers} worker(s) "
          f"in {seconds:.1f} s ({rate:.0f}/s); status {counts}; rules {rules}; "
          f"accuracy {grades['correct'].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
