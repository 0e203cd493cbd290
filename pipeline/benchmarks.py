"""Benchmarks: definitions, loading into one normalised table, and prompts.

    python -m pipeline.benchmarks --spec JSON --out results/benchmarks/NAME.parquet

The normalised table has one row per problem: id (str), problem (str), answer (str; for
multiple choice the text of the correct choice), choices (list of str, or None).
"""

from __future__ import annotations

# name -> where the references load it and how it is graded (see STUDY.md, "Data sources").
BUILTIN: dict[str, dict] = {
    "aime24": {"hub": "simplescaling/aime24_nofigures", "split": "train", "grader": "integer",
               "columns": {"id": "id", "problem": "problem", "answer": "answer"}},
    "aime25": {"hub": "opencompass/AIME2025", "config_name": "AIME2025-I", "split": "test", "grader": "integer",
               "columns": {"problem": "question", "answer": "answer"}},
    "amc23": {"hub": "math-ai/amc23", "split": "test", "grader": "number",
              "columns": {"id": "id", "problem": "question", "answer": "answer"}},
    "math500": {"hub": "HuggingFaceH4/MATH-500", "split": "test", "grader": "math",
                "columns": {"id": "unique_id", "problem": "problem", "answer": "answer"}},
    "gpqa_diamond": {"hub": "Idavidrein/gpqa", "config_name": "gpqa_diamond", "split": "train", "grader": "choice",
                     "gated": True,
                     "columns": {"id": "Record ID", "problem": "Question", "answer": "Correct Answer",
                                 "choices": "Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3"}},
}


def resolve_definition(name: str, overrides: dict) -> dict:
    """The built-in definition of `name` (if any) updated by the config's overrides.
    A `file` override replaces the Hub source entirely."""
    base = dict(BUILTIN.get(name, {}))
    if "file" in overrides:
        for key in ("hub", "config_name", "split", "revision", "gated"):
            base.pop(key, None)
    merged = {**base, **overrides}
    merged["columns"] = {**base.get("columns", {}), **overrides.get("columns", {})} if "file" not in overrides else dict(overrides.get("columns", {}))
    return merged

LETTERS = "ABCDEFGHIJ"


def choice_order(n_choices: int, seed: int, problem_id: str) -> list[int]:
    """A permutation of the choices, seeded by (seed, problem id) so that it differs between
    questions and seeds but is the same on every run (never one generator per question, which
    puts every answer at the same letter)."""
    import hashlib
    import random

    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    order = list(range(n_choices))
    random.Random(int.from_bytes(digest[:8], "little")).shuffle(order)
    return order


def render_question(row: dict, seed: int) -> tuple[str, str, list[int] | None]:
    """The user turn for one problem under one seed, its gold answer, and the choice order.

    Math: the problem text; gold = the answer. Multiple choice (GPQA's format):
    "{Question}\\n\\nA) ..\\nB) ..\\nC) ..\\nD) .." with choices shuffled per (seed, id);
    gold = the letter of the correct choice."""
    choices = row.get("choices")
    if choices is None or len(choices) == 0:
        return row["problem"], str(row["answer"]), None
    choices = list(choices)
    order = choice_order(len(choices), seed, str(row["id"]))
    shown = [choices[i] for i in order]
    lines = "\n".join(f"{LETTERS[k]}) {text}" for k, text in enumerate(shown))
    gold = LETTERS[shown.index(row["answer"])]
    return f"{row['problem']}\n\n{lines}", gold, order
