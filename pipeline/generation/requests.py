"""Generation requests: one per problem, seed and parallel sample of a benchmark table, with its
prompt as token ids, its gold answer and the order its choices are shown in. The generate stage
runs them; the preflight checks their lengths against the model's context before any job."""

from __future__ import annotations

import pandas as pd

from pipeline.data.benchmarks import render_question
from pipeline.generation import budget_forcing as bf
from pipeline.generation import templates


def requests_for(table: pd.DataFrame, bound: templates.Bound, seed: int, samples: int) -> list[bf.Request]:
    out = []
    for row in table.to_dict("records"):
        user_text, gold, order = render_question(row, seed)
        prompt = tuple(bound.prompt_ids(user_text))
        for sample in range(samples):
            out.append(bf.Request(
                problem_id=str(row["id"]), seed=seed, sample=sample,
                sample_seed=bf.sample_seed(seed, str(row["id"]), sample), prompt_ids=prompt, gold=gold,
                choice_order=tuple(order) if order is not None else None,
            ))
    return out
