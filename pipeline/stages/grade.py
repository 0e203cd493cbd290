"""Grade every answer of one generations file.

    python -m pipeline.stages.grade --generations results/generations/M/V/B.parquet --spec JSON \\
        --out results/grades/M/V/B.parquet [--benchmark results/data/B.parquet] [--workers N]

The spec is `pipeline.core.slices.grading_slice`: {benchmark, grader, timeout_s, workers}; --workers caps the
worker processes (Snakemake passes the job's threads). The graded text is the answer segment as
the model saw it: the words the template put before the answer (a forced "Final Answer:",
without special tokens) followed by the generated answer. For multiple choice, --benchmark
(the normalised benchmark table) gives each question's options in the order the model saw them
(the row's choice_order), so that an answer giving an option's text is read as that option.
One row per generation row: the generation keys, gold, extracted, rule, status (correct | wrong |
ambiguous | no_answer | timeout; docs/GRADING.md), correct, thinking_tokens, answer_tokens,
hit_budget, prompt_tokens (when the generations have it); the metadata carries the generations'
`compute` facts (docs/COMPUTE.md).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from pipeline.core import config
from pipeline.core.artifacts import read_provenance, read_table, spec_argument, write_table
from pipeline.grading.answers import KEYS, prefix_tail
from pipeline.grading.worker_pool import available_cores, grade_many

CARRIED = ["thinking_tokens", "answer_tokens", "hit_budget"]
REQUIRED = KEYS + ["gold", "answer"] + CARRIED
OPTIONAL = ["prompt_tokens"]  # carried when present: the compute per problem (docs/COMPUTE.md)


def shown_choices(generations: pd.DataFrame, benchmark: pd.DataFrame) -> list[list[str] | None]:
    """Each row's options in the order its prompt showed them (A, B, ...), from the benchmark
    table's choices and the row's choice_order; None for a row without options."""
    if "choice_order" not in generations:
        raise ValueError("generations lack column choice_order; regenerate them with pipeline.stages.generate")
    by_id = {str(i): c for i, c in zip(benchmark["id"], benchmark["choices"])}
    unknown = sorted(set(generations["problem_id"].astype(str)) - set(by_id))
    if unknown:
        raise ValueError(f"problem(s) {', '.join(unknown[:5])} are not in the benchmark table; "
                         "pass the table the generations were made from (results/data/<benchmark>.parquet)")
    out = []
    for problem, order in zip(generations["problem_id"].astype(str), generations["choice_order"]):
        choices = by_id[problem]
        if not hasattr(order, "__len__") or choices is None or len(choices) == 0:  # None or NaN: no options
            out.append(None)
            continue
        if len(order) != len(choices):
            raise ValueError(f"problem {problem}: choice_order has {len(order)} entries for {len(choices)} choices; "
                             "the benchmark table changed since generation: regenerate, or pass the original table")
        out.append([str(choices[i]) for i in order])
    return out


def grade_table(generations: pd.DataFrame, grader: str, timeout_s: float, workers: int,
                benchmark: pd.DataFrame | None = None) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in generations.columns]
    if missing:
        raise ValueError(f"generations lack column(s) {', '.join(missing)}; regenerate them with pipeline.stages.generate")
    answers = generations["answer"].fillna("")
    if "answer_prefix" in generations:
        answers = generations["answer_prefix"].fillna("").map(prefix_tail) + answers
    golds = generations["gold"].astype(str)
    if grader == "choice" and benchmark is not None:
        items = list(zip(golds, answers, shown_choices(generations, benchmark)))
    else:
        items = list(zip(golds, answers))
    verdicts = grade_many(items, grader, timeout_s=timeout_s, workers=workers)
    out = generations[KEYS + ["gold"]].copy()
    out["extracted"] = [v.extracted for v in verdicts]
    out["rule"] = [v.rule for v in verdicts]
    out["status"] = [v.status for v in verdicts]
    out["correct"] = [v.correct for v in verdicts]
    for column in CARRIED + [c for c in OPTIONAL if c in generations]:
        out[column] = generations[column].to_numpy()
    return out


def compute_facts(generations) -> dict | None:
    """The variant's compute facts the generate stage recorded (docs/COMPUTE.md); they ride along
    in the grades' metadata for the aggregate stage. None for generations written without them."""
    try:
        return read_provenance(generations).get("compute")
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", required=True, help="generations Parquet (pipeline.stages.generate)")
    parser.add_argument("--spec", required=True, help="pipeline.core.slices.grading_slice as JSON (or @file)")
    parser.add_argument("--out", required=True, help="output grades Parquet")
    parser.add_argument("--benchmark", default=None,
                        help="the benchmark table (pipeline.stages.benchmark_data): multiple-choice options for reading "
                             "an answer given as an option's text")
    parser.add_argument("--workers", type=int, default=None,
                        help="cap on worker processes (the job's threads); default: the spec's workers")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "grade", spec)  # the workflow's own refusals, before loading
    workers = spec.get("workers", 0) or available_cores()
    if args.workers:
        workers = min(workers, args.workers)
    generations = read_table(args.generations)
    benchmark = read_table(args.benchmark) if args.benchmark else None
    started = time.monotonic()
    grades = grade_table(generations, spec["grader"], spec["timeout_s"], workers, benchmark)
    seconds = time.monotonic() - started
    write_table(grades, args.out, spec, compute=compute_facts(args.generations))
    counts = grades["status"].value_counts().to_dict()
    rules = grades["rule"].fillna("none").value_counts().to_dict()
    rate = len(grades) / max(seconds, 1e-9)
    print(f"{spec['benchmark']} ({spec['grader']}): {len(grades)} answers graded with {workers} worker(s) "
          f"in {seconds:.1f} s ({rate:.0f}/s); status {counts}; rules {rules}; "
          f"accuracy {grades['correct'].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
