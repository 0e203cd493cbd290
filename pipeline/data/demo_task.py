"""The demo's synthetic reasoning task: a Fibonacci-like chain modulo 10, written out step by step.

A problem gives two starting digits and a number of steps n (as the letter it counts down
from); each step writes the sum of the two numbers before it, modulo 10, under a letter that
counts down to "a". The answer is the last number:

    problem   Each number is the sum of the two before it, modulo 10. Count down from d to a,
              starting with 4 and 7.
    thinking   d1 c8 b9 a7
    answer    The answer is \\boxed{7}.

Every step is local and easy (the next letter, and the sum of the numbers two and four tokens
back), the chain is as long as n, so the thinking grows with difficulty (two tokens a step), and
a budget that cuts the chain leaves the model guessing: its best guess, the last number it
wrote, is right about one time in ten.
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass

from pipeline.core.config_schema import schema_defaults

LABELS = string.ascii_lowercase[:24]  # a..x: at most 24 steps
MODULUS = 10
CHOICE_LETTERS = "ABCD"
DEFAULTS = schema_defaults("demo_task")


@dataclass(frozen=True)
class Problem:
    first: int
    second: int
    n: int

    def sequence(self) -> list[int]:
        """The two starting digits and the n numbers of the chain."""
        values = [self.first, self.second]
        for _ in range(self.n):
            values.append((values[-1] + values[-2]) % MODULUS)
        return values

    @property
    def answer(self) -> int:
        return self.sequence()[-1]

    @property
    def text(self) -> str:
        return (f"Each number is the sum of the two before it, modulo 10. Count down from {LABELS[self.n - 1]} "
                f"to a, starting with {self.first} and {self.second}.")

    def steps(self) -> list[str]:
        """One string per step of the worked solution; their concatenation is the thinking."""
        return [f" {LABELS[self.n - 1 - k]}{value}" for k, value in enumerate(self.sequence()[2:])]

    def partial_sum(self, steps_done: int) -> int:
        """The last number written after `steps_done` steps: the best guess when the chain is cut."""
        return self.sequence()[1 + steps_done]

    @property
    def id(self) -> str:
        return f"{self.first}{self.second}-{self.n}"


def stream(seed: int, purpose: str) -> random.Random:
    """An independent generator for (seed, purpose): purposes (train, calibration, benchmark)
    never share draws, whatever their seeds."""
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def sample(rng: random.Random, task: dict | None = None) -> Problem:
    """A problem with a uniformly drawn number of terms, so lengths spread evenly."""
    task = {**DEFAULTS, **(task or {})}
    low, high = task["min_terms"], task["max_terms"]
    if not 1 <= low <= high <= len(LABELS):
        raise ValueError(f"task terms must satisfy 1 <= min_terms <= max_terms <= {len(LABELS)}; got {low}..{high}")
    n = rng.randint(low, high)
    return Problem(rng.randrange(MODULUS), rng.randrange(MODULUS), n)


def choices(problem: Problem, rng: random.Random) -> list[str]:
    """The correct sum and three distinct wrong ones, correct first (the benchmark shuffles)."""
    wrong = rng.sample([d for d in range(MODULUS) if d != problem.answer], len(CHOICE_LETTERS) - 1)
    return [str(problem.answer)] + [str(d) for d in wrong]


def benchmark_rows(task: dict, form: str, problems: int, seed: int) -> list[dict]:
    """Benchmark rows in the project's normalised columns (id, problem, answer, choices)."""
    if form not in ("math", "choice"):
        raise ValueError(f"task form must be math or choice, got {form!r}")
    rng = stream(seed, "benchmark")
    rows = []
    for index in range(problems):
        problem = sample(rng, task)
        row = {"id": f"chain-{index}", "problem": problem.text, "answer": str(problem.answer)}
        if form == "choice":
            row["choices"] = choices(problem, rng)
        rows.append(row)
    return rows


def solution_text(problem: Problem) -> tuple[str, str]:
    """(thinking, answer) of the worked solution, in both forms: a multiple-choice question is
    answered with the option's text, which the letter grader reads as that option."""
    return "".join(problem.steps()), f"The answer is \\boxed{{{problem.answer}}}."


def calibration_text(task: dict, documents: int, seed: int) -> str:
    """Worked problems, one a paragraph, in the Qwen3 chat layout the demo model reads and writes:
    the task's own distribution, as C4 is for real models."""
    rng = stream(seed, "calibration")
    paragraphs = []
    for _ in range(documents):
        problem = sample(rng, task)
        thinking, answer = solution_text(problem)
        paragraphs.append(f"<|im_start|>user\n{problem.text}<|im_end|>\n<|im_start|>assistant\n<think>\n"
                          f"{thinking}</think>\n\n{answer}<|im_end|>")
    return "\n\n".join(paragraphs) + "\n"
