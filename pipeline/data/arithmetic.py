"""A generated benchmark of one- and two-digit arithmetic, drawn with a seed.

For real models too small for the study's benchmarks (SmolLM2-135M solves none of AIME): a
task a small instruction-tuned model partly solves, so that pruning has accuracy to lose. Each
problem adds or subtracts two numbers of one or two digits (each operand's digit count drawn
first, so one-digit operands are as common as two-digit ones):

    problem   What is 47 + 8? Answer with the number only.
    answer    55

graded as integers (grader integer). Problem ids are `arith-{index}`; the same seed gives the
same problems on every machine (Python's random, seeded through sha256 like demo_task).
"""

from __future__ import annotations

import hashlib
import random

OPERATIONS = ("+", "-")
QUESTION = "What is {a} {op} {b}? Answer with the number only."


def _operand(rng: random.Random) -> int:
    return rng.randint(0, 9) if rng.random() < 0.5 else rng.randint(10, 99)


def benchmark_rows(problems: int, seed: int) -> list[dict]:
    """Benchmark rows in the project's normalised columns (id, problem, answer)."""
    digest = hashlib.sha256(f"arithmetic:{seed}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "little"))
    rows = []
    for index in range(problems):
        a, op, b = _operand(rng), rng.choice(OPERATIONS), _operand(rng)
        answer = a + b if op == "+" else a - b
        rows.append({"id": f"arith-{index}", "problem": QUESTION.format(a=a, op=op, b=b), "answer": str(answer)})
    return rows
