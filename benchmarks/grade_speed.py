"""Grading throughput: answers per second with one worker process and with one per core.

    python benchmarks/grade_speed.py [--answers 4000] [--workers N] [--cases FILE] [--in-process-only]

The answers are realistic answer segments: a few sentences of working followed by a final answer
in the phrasings of a labelled set (default tests/fixtures/grading_cases.jsonl: boxed, "Final
Answer:", letters, hedges, LaTeX and unicode traps), for all four graders. The in-process figure
(answers per CPU-second) is the one to compare between versions: it is not disturbed by other
load on the cores. Compare versions on the same --cases file, since the mix sets the cost.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.grading.answers import grade_one  # noqa: E402
from pipeline.grading.worker_pool import available_cores, grade_many  # noqa: E402

CASES = ROOT / "tests" / "fixtures" / "grading_cases.jsonl"

WORKING = [
    "We set up the equation from the conditions of the problem and simplify both sides.",
    "Substituting $x = 2$ gives $3x^2 - 4x + 1 = 5$, which checks out.",
    "By the law of cosines, $c^2 = a^2 + b^2 - 2ab\\cos C$, so $c = \\sqrt{19}$.",
    "Counting the cases separately and adding them avoids double counting.",
    "The sum telescopes: $\\sum_{k=1}^{n} \\frac{1}{k(k+1)} = 1 - \\frac{1}{n+1}$.",
    "Taking everything modulo 1000 keeps the numbers small.",
]


def synthetic_answers(count: int, seed: int = 0, cases_path: Path = CASES) -> dict[str, list[tuple]]:
    rng = random.Random(seed)
    cases = [json.loads(line) for line in cases_path.open()]
    cases = [c for c in cases if len(c["output"]) < 2000]
    by_grader: dict[str, list[tuple]] = {}
    for _ in range(count):
        case = rng.choice(cases)
        working = " ".join(rng.choices(WORKING, k=rng.randint(2, 8)))
        item = (case["gold"], f"{working}\n\n{case['output']}")
        by_grader.setdefault(case["grader"], []).append(item + (case["choices"],) if case.get("choices") else item)
    return by_grader


def measure(answers: dict[str, list[tuple]], workers: int) -> float:
    started = time.monotonic()
    for grader, items in answers.items():
        grade_many(items, grader, timeout_s=5, workers=workers)
    return sum(map(len, answers.values())) / (time.monotonic() - started)


def cpu_rate(answers: dict[str, list[tuple]]) -> float:
    """Answers per CPU-second graded in this process: the per-core cost without the pool, and
    without the noise of other processes sharing the cores (one-time imports excluded)."""
    grade_one("1", "\\boxed{\\frac{1}{2}}", "math")
    started = time.process_time()
    for grader, items in answers.items():
        for item in items:
            grade_one(item[0], item[1], grader, *item[2:])
    return sum(map(len, answers.values())) / (time.process_time() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=available_cores(), help="the parallel run's workers")
    parser.add_argument("--cases", type=Path, default=CASES,
                        help="labelled set (JSON lines) the answers are drawn from")
    parser.add_argument("--in-process-only", action="store_true", help="skip the worker-pool measurements")
    args = parser.parse_args()
    answers = synthetic_answers(args.answers, cases_path=args.cases)
    print(f"{args.answers} answers: " + ", ".join(f"{g} {len(v)}" for g, v in sorted(answers.items())))
    print(f"in-process: {cpu_rate(answers):.0f} answers per CPU-second")
    if args.in_process_only:
        return 0
    single = measure(answers, 1)
    print(f"1 worker: {single:.0f} answers/s (wall clock)")
    parallel = measure(answers, args.workers)
    print(f"{args.workers} workers: {parallel:.0f} answers/s, {parallel / args.workers:.0f} per core "
          f"(speed-up {parallel / single:.2f}x; wall clock, so other load on the cores lowers it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
