"""Stage: a judge's second opinion on graded answers, from an OpenAI-compatible chat endpoint.

    python -m pipeline.stages.judge --grades results/grades/M/V/B.parquet \\
        --generations results/generations/M/V/B.parquet --spec JSON --out results/judgements/M/V/B.parquet

    python -m pipeline.stages.judge --disagreements results/judgements/*/*/*.parquet \\
        --out results/tables/judge_disagreements.csv

The spec is {benchmark, judge: grading.judge}. One row per grades row: the grade
keys, the deterministic status and correct, and beside them judge_status (correct | wrong |
unclear | not_asked), judge_correct (empty where not asked or unclear) and judge_reply. What the
judge sees, which rows it asks, the verdict cache, rate limits, retries and a local model:
pipeline.grading.judge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.core.artifacts import read_table, spec_argument, write_table
from pipeline.grading.answers import KEYS, prefix_tail
from pipeline.grading.judge import (Cache, Client, JudgeError, api_key, cache_key, judge_rows, log, prompt_for,
                                    serve_local, stop_local, to_ask, verdict_of)


def segments(generations: pd.DataFrame) -> pd.Series:
    """The answer segment the deterministic grader read, per generation row."""
    answers = generations["answer"].fillna("")
    if "answer_prefix" in generations:
        answers = generations["answer_prefix"].fillna("").map(prefix_tail) + answers
    return answers


def run(spec: dict, grades_path, generations_path, out) -> pd.DataFrame:
    judge = spec["judge"]
    grades = read_table(grades_path)
    generations = read_table(generations_path)
    table = grades.merge(generations[KEYS].assign(segment=segments(generations)), on=KEYS, how="left")
    if table["segment"].isna().any():
        raise JudgeError(f"{generations_path} lacks rows graded in {grades_path}; rerun the grade stage")
    ask = to_ask(table, judge["scope"])
    server = None
    try:
        if judge.get("local_model"):
            server, endpoint = serve_local(judge["local_model"], judge["local_max_model_len"],
                                           Path(f"{out}.server.log"))
            model, key = "judge", None
        else:
            endpoint, model, key = judge["endpoint"], judge["model"], api_key(judge)
            if judge.get("api_key_env") and not key:
                raise JudgeError(f"the environment variable {judge['api_key_env']} (grading.judge.api_key_env) "
                                 "is not set")
        prompts = {row: prompt_for(gold, segment) for row, gold, segment
                   in zip(table.index[ask], table["gold"][ask].astype(str), table["segment"][ask])}
        keys = {row: cache_key(judge.get("model") if not judge.get("local_model") else judge["local_model"], p)
                for row, p in prompts.items()}
        cache = Cache(Path(f"{out}.verdicts.jsonl"))
        judge_rows({keys[row]: prompts[row] for row in prompts}, Client(endpoint, model, key, judge), cache,
                   judge["concurrency"])
    finally:
        if server is not None:
            stop_local(server)
    replies = pd.Series({row: cache.done[keys[row]] for row in prompts}, dtype=object)
    out_table = table[KEYS + ["gold", "extracted", "status", "correct"]].copy()
    out_table["judge_reply"] = replies.reindex(table.index)
    out_table["judge_status"] = out_table["judge_reply"].map(
        lambda r: verdict_of(r) if isinstance(r, str) else "not_asked")
    out_table["judge_correct"] = out_table["judge_status"].map({"correct": True, "wrong": False}).astype("boolean")
    write_table(out_table, out, spec)
    counts = out_table["judge_status"].value_counts().to_dict()
    log(f"{len(out_table)} rows, judge status {counts} -> {out}")
    return out_table


DISAGREEMENT_COLUMNS = KEYS + ["gold", "extracted", "status", "judge_status", "judge_reply"]


def disagreements(judgements: pd.DataFrame) -> pd.DataFrame:
    """Rows where the judge gave a verdict that differs from the deterministic grader's."""
    judged = judgements["judge_correct"].notna()
    differ = judged & (judgements["judge_correct"].fillna(False).astype(bool) != judgements["correct"].astype(bool))
    return judgements.loc[differ, DISAGREEMENT_COLUMNS].reset_index(drop=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grades", help="grades Parquet (pipeline.stages.grade)")
    parser.add_argument("--generations", help="the generations Parquet they grade")
    parser.add_argument("--spec", help="{benchmark, judge} as JSON (or @file)")
    parser.add_argument("--disagreements", nargs="+",
                        help="judgements Parquet files: list where judge and grader differ")
    parser.add_argument("--out", required=True, help="output judgements Parquet (or disagreements CSV)")
    args = parser.parse_args(argv)
    if args.disagreements:
        from pipeline.core.artifacts import atomic_path

        table = disagreements(pd.concat([read_table(p) for p in args.disagreements], ignore_index=True))
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
        log(f"{len(table)} disagreements -> {args.out}")
        return 0
    if not (args.grades and args.generations and args.spec):
        parser.error("--grades, --generations and --spec are required (or --disagreements)")
    try:
        run(spec_argument(args.spec), args.grades, args.generations, args.out)
    except JudgeError as error:
        print(f"judge: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
