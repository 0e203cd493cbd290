"""Benchmark definitions: the built-in benchmarks and how a config entry overrides them.

Plain data and one pure function, so that the config check can resolve a benchmark without
importing the loading code (pandas, datasets) that pipeline.data.benchmarks needs.
"""

from __future__ import annotations

# name -> the Hub copy the reference implementations load and how it is graded.
# A comma-separated config_name loads several configurations, one after the other.
BUILTIN: dict[str, dict] = {
    "aime24": {"hub": "simplescaling/aime24_nofigures", "split": "train", "grader": "integer",
               "columns": {"id": "id", "problem": "problem", "answer": "answer"}},
    "aime25": {"hub": "opencompass/AIME2025", "config_name": "AIME2025-I,AIME2025-II", "split": "test",
               "grader": "integer", "columns": {"problem": "question", "answer": "answer"}},
    "amc23": {"hub": "math-ai/amc23", "split": "test", "grader": "number",
              "columns": {"id": "id", "problem": "question", "answer": "answer"}},
    "math500": {"hub": "HuggingFaceH4/MATH-500", "split": "test", "grader": "math",
                "columns": {"id": "unique_id", "problem": "problem", "answer": "answer"}},
    "gpqa_diamond": {"hub": "Idavidrein/gpqa", "config_name": "gpqa_diamond", "split": "train", "grader": "choice",
                     "gated": True,
                     "columns": {"id": "Record ID", "problem": "Question", "answer": "Correct Answer",
                                 "choices": "Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3"}},
}
OUR_COLUMNS = ("id", "problem", "answer", "choices", "correct")
LETTERS = "ABCDEFGHIJ"


def resolve_definition(name: str, overrides: dict) -> dict:
    """The built-in definition of `name` (if any) updated by the config's overrides.
    A `file` (or `demo_task`) override replaces the Hub source, and its columns replace the
    built-in ones; a demo_task benchmark is graded as its form asks unless grader says otherwise."""
    base = dict(BUILTIN.get(name, {}))
    if "file" in overrides or "demo_task" in overrides:
        for key in ("hub", "config_name", "split", "revision", "gated", "columns"):
            base.pop(key, None)
    merged = {**base, **overrides}
    if "demo_task" in overrides and "grader" not in overrides:
        merged["grader"] = "choice" if overrides["demo_task"]["form"] == "choice" else "math"
    merged["columns"] = {**base.get("columns", {}), **overrides.get("columns", {})}
    return merged
