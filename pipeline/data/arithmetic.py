"""A generated benchmark of one-digit arithmetic, drawn with a seed.

For real models too small for the study's benchmarks (SmolLM2-135M solves none of AIME): a
task a small instruction-tuned model partly solves, so that pruning has accuracy to lose. Each
problem adds or subtracts two one-digit numbers, the larger first for a subtraction (answers 0
to 18, never negative):

    problem   What is 7 + 8? Give only the final number, no words.
    answer    15

graded as integers (grader integer). Dense SmolLM2-135M-Instruct, greedy, answers 28 of seed 1's
first 40 (docs/REAL_MODEL.md); with two-digit operands and "Answer with the number only." it
answered about 7 in 100. Problem ids are `arith-{index}`; the same seed gives the same problems on every
machine (Python's random, seeded through sha256 like demo_task).
"""

from __future__ import annotations

import hashlib
import random

OPERATIONS = ("+", "-")
QUESTION = "What is {a} {op} {b}? Give only the final number, no words."


def benchmark_rows(problems: int, seed: int) -> list[dict]:
    """Benchmark rows in the project's normalised columns (id, problem, answer)."""
    digest = hashlib.sha256(f"arithmetic:{seed}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "little"))
    rows = []
    for index in range(problems):
        a, op, b = rng.randint(0, 9), rng.choice(OPERATIONS), rng.randint(0, 9)
        if op == "-" and b > a:
            a, b = b, a
        answer = a + b if op == "+" else a - b
        rows.append({"id": f"arith-{index}", "problem": QUESTION.format(a=a, op=op, b=b), "answer": str(answer)})
    return rows
