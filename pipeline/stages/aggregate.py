"""The main results table: one row per (model, variant, benchmark, budget, Wait setting).

    python -m pipeline.stages.aggregate --grades results/grades/*/*/*.parquet \\
        [--perplexity results/perplexity/*/*.parquet] --spec JSON --out results/tables/main.csv

The spec is `pipeline.core.slices.table_slice`. Besides main.csv the stage writes the pivots of
`pipeline.reporting.tables` next to it. Statistics, per cell:

- accuracy: mean over seeds of each seed's accuracy (over problems and samples);
  accuracy_std: the sample standard deviation (ddof 1) of the per-seed accuracies;
- ci_low, ci_high: percentile bootstrap over problems (a problem's score is its mean over seeds
  and samples) at the spec's confidence, so the interval reflects which problems were drawn;
- delta_vs_dense, delta_ci_low, delta_ci_high: accuracy minus the same model's dense variant on
  the same benchmark, budget and Wait setting, with a paired bootstrap over the problems both have;
- pass@k (unbiased: 1 - C(n-c, k) / C(n, k)) and maj@k (the expected majority-vote accuracy
  over all k-subsets of the n samples, ties broken at random; unanswered samples do not vote)
  for k = 1, 2, 4, ... and n, when a cell has n > 1 samples per problem and seed;
- mean_thinking_tokens, mean_answer_tokens, budget_hit_rate, no_answer_rate, ambiguous_rate
  (multiple-choice hedges, never correct), timeout_rate;
- perplexity (or perplexity_<dataset>) of the (model, variant) when perplexity files are given;
- compute (docs/COMPUTE.md): per variant params, nonzero_params (and per matrix kind
  params_<kind>, nonzero_params_<kind>), blocks_kept, flops_per_token_dense_hw,
  flops_per_token_ideal_sparse, attention_flops_per_context_token, checkpoint_bytes,
  generation_tokens_per_s; per cell mean_prompt_tokens, mean_generated_tokens,
  flops_per_problem_dense_hw, flops_per_problem_ideal_sparse (the summed cost of a problem's
  samples). Besides the pivots: equal-compute-{model}.csv|md (pipeline.reporting.equal_compute)
  and claims-{model}.csv|md, the study's comparisons tested and corrected across the grid
  (pipeline.reporting.claims, docs/STATISTICS.md).
- with judgements (pipeline.stages.judge): judge_accuracy (accuracy with the judge's verdict in place of
  the deterministic one where the judge gave one), judge_asked (rows the judge was asked about)
  and judge_agreement (share of the rows it judged correct or wrong where it agrees with the
  deterministic grader).

Every expected cell (models x variants x benchmarks x budgets x Wait settings of the spec) has a
row; `wait_times` is the cell's Wait setting (generation.wait.times). status is
ok, partial (some seeds, problems or samples missing; `missing` says which) or missing (no
grades at all; the metrics are empty); the stage names every non-ok cell on stderr, and
--strict makes it fail instead.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.core import config
from pipeline.reporting import claims, compute, equal_compute, tables
from pipeline.core.artifacts import atomic_path, read_provenance, read_table, spec_argument
from pipeline.reporting.tables import variant_order

CELL = ["model", "variant", "benchmark", "budget", "wait_times"]
VARIANT_FIELDS = ["method", "sparsity", "nm", "allocation", "layers"]


# --------------------------------------------------------------------------- estimators


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(correct: int, wrong_groups: list[int], unanswered: int, k: int) -> float:
    """Expected majority-vote accuracy of a uniformly random k-subset of n samples: `correct`
    samples agree on the gold answer, `wrong_groups` are the sizes of the groups of identical
    wrong answers, `unanswered` samples do not vote. A tie with t other groups counts 1/(t+1)."""
    n = correct + sum(wrong_groups) + unanswered
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be in 1..{n}")
    expected = 0.0
    for j in range(1, min(correct, k) + 1):
        rest = k - j
        # ways[drawn][ties]: the wrong groups draw `drawn` samples, none more than j, `ties` exactly j
        ways = {(0, 0): 1}
        for size in wrong_groups:
            nxt: dict[tuple[int, int], int] = {}
            for (drawn, ties), count in ways.items():
                for x in range(0, min(size, j, rest - drawn) + 1):
                    key = (drawn + x, ties + (x == j))
                    nxt[key] = nxt.get(key, 0) + count * comb(size, x)
            ways = nxt
        for (drawn, ties), count in ways.items():
            expected += comb(correct, j) * count * comb(unanswered, rest - drawn) / (ties + 1)
    return expected / comb(n, k)


def ks_for(n: int) -> list[int]:
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def bootstrap_ci(values: np.ndarray, resamples: int, confidence: float,
                 rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (rows: units resampled with replacement;
    a 2-D input resamples its rows jointly and takes the mean of column 0 minus column 1)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.nan, np.nan
    index = rng.integers(0, len(values), size=(resamples, len(values)))
    sample = values[index]
    means = sample.mean(axis=1) if values.ndim == 1 else (sample[..., 0] - sample[..., 1]).mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


# --------------------------------------------------------------------------- one cell


def _vote_key(text) -> str:
    return "".join(str(text).replace("$", "").split())


def sample_metrics(cell: pd.DataFrame) -> dict[str, float]:
    """pass@k and maj@k averaged over (problem, seed) groups of n samples each."""
    keys = ["problem_id", "seed"]
    n = int(cell.groupby(keys, sort=False).size().min())
    cell = cell.groupby(keys, sort=False).head(n)
    right = cell.groupby(keys, sort=False)["correct"].sum()
    # answered but wrong: groups of identical answers (they split the vote); the rest do not vote
    wrong = cell[~cell["correct"] & cell["status"].eq("wrong")]
    votes = wrong.assign(vote=wrong["extracted"].map(_vote_key)).groupby([*keys, "vote"], sort=False).size()
    wrong_groups: dict[tuple, list[int]] = {key: [] for key in right.index}
    for (problem, seed, _), count in votes.items():
        wrong_groups[(problem, seed)].append(int(count))
    per_group = [(int(c), wrong_groups[key], n - int(c) - sum(wrong_groups[key])) for key, c in right.items()]
    out = {}
    for k in ks_for(n):
        out[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for c, _, _ in per_group]))
        out[f"maj@{k}"] = float(np.mean([maj_at_k(c, w, u, k) for c, w, u in per_group]))
    return out


def cell_metrics(cell: pd.DataFrame, dense: pd.DataFrame | None, spec: dict, key: tuple) -> dict:
    per_seed = cell.groupby("seed")["correct"].mean()
    per_problem = tables.problem_scores(cell)
    samples = cell.groupby(["problem_id", "seed"]).size()
    resamples, confidence = spec.get("bootstrap", 1000), spec.get("confidence", 0.95)
    low, high = bootstrap_ci(per_problem.to_numpy(), resamples, confidence, tables.cell_rng("accuracy", *key))
    row = {
        "accuracy": float(per_seed.mean()),
        "accuracy_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan,
        "ci_low": low, "ci_high": high,
        "n_problems": int(per_problem.size), "n_seeds": int(per_seed.size), "n_samples": int(samples.max()),
    }
    if dense is not None and not dense.empty:
        paired = tables.paired(per_problem, tables.problem_scores(dense))
        row["delta_vs_dense"] = float((paired.iloc[:, 0] - paired.iloc[:, 1]).mean())
        row["delta_ci_low"], row["delta_ci_high"] = bootstrap_ci(paired.to_numpy(), resamples, confidence,
                                                                 tables.cell_rng("delta", *key))
    if samples.max() > 1:
        row.update(sample_metrics(cell))
    row["mean_thinking_tokens"] = float(cell["thinking_tokens"].mean())
    row["mean_answer_tokens"] = float(cell["answer_tokens"].mean()) if "answer_tokens" in cell else np.nan
    row["budget_hit_rate"] = float(cell["hit_budget"].astype(float).mean())
    row["no_answer_rate"] = float(cell["status"].eq("no_answer").mean())
    row["ambiguous_rate"] = float(cell["status"].eq("ambiguous").mean())
    row["timeout_rate"] = float(cell["status"].eq("timeout").mean())
    return row


def _gaps(cell: pd.DataFrame, seeds: list[int], benchmark_problems: set) -> str:
    gaps = []
    absent_seeds = sorted(set(seeds) - set(cell["seed"]))
    if absent_seeds:
        gaps.append(f"seeds {absent_seeds}")
    absent = benchmark_problems - set(cell["problem_id"])
    if absent:
        gaps.append(f"{len(absent)} of {len(benchmark_problems)} problems")
    sizes = cell.groupby(["problem_id", "seed"]).size()
    if sizes.nunique() > 1:
        gaps.append(f"samples per problem and seed vary ({sizes.min()}-{sizes.max()})")
    return "; ".join(gaps)


# --------------------------------------------------------------------------- the table


def judge_metrics(cell: pd.DataFrame) -> dict:
    """The judge's second opinion on a cell whose grades carry judge_status / judge_correct."""
    judged = cell["judge_correct"].notna()
    second = cell["judge_correct"].where(judged, cell["correct"]).astype(bool)
    return {
        "judge_accuracy": float(cell.assign(second=second).groupby("seed")["second"].mean().mean()),
        "judge_asked": int(cell["judge_status"].ne("not_asked").sum()),
        "judge_agreement": float((cell["judge_correct"][judged].astype(bool) == cell["correct"][judged]).mean())
        if judged.any() else np.nan,
    }


def with_judgements(grades: pd.DataFrame, judgements: pd.DataFrame) -> pd.DataFrame:
    keys = CELL + ["problem_id", "seed", "sample"]
    judgements = judgements.assign(problem_id=judgements["problem_id"].astype(str))
    return grades.merge(judgements[keys + ["judge_status", "judge_correct"]], on=keys, how="left").assign(
        judge_status=lambda t: t["judge_status"].fillna("not_asked"))


def main_table(grades: pd.DataFrame, spec: dict, perplexity: pd.DataFrame | None = None,
               judgements: pd.DataFrame | None = None, facts: dict | None = None) -> pd.DataFrame:
    """`facts`: (model, variant) -> the variant's compute facts (`read_facts`)."""
    facts = facts or {}
    variants = spec["variants"]
    settings = tables.wait_settings(spec)
    dense_name = next((name for name, v in variants.items() if v["method"] == "dense"), None)
    grades = grades.assign(problem_id=grades["problem_id"].astype(str), correct=grades["correct"].astype(bool))
    if judgements is not None:
        grades = with_judgements(grades, judgements)
    cells = dict(list(grades.groupby(CELL, sort=False)))
    # a benchmark's problems: every problem any cell of it has graded
    problems = grades.groupby("benchmark")["problem_id"].agg(set).to_dict()
    rows = []
    for model in spec["models"]:
        for variant in variant_order(spec):
            vspec = variants[variant]
            known = facts.get((model, variant)) or {}
            per_variant = {c: known.get(c, np.nan) for c in compute.VARIANT_COLUMNS + compute.KIND_COLUMNS}
            for benchmark, budget, setting in itertools.product(spec["benchmarks"], spec["budgets"], settings):
                key = (model, variant, benchmark, budget, setting)
                row = dict(zip(CELL, key), **{f: vspec.get(f) for f in VARIANT_FIELDS}, **per_variant)
                row["training_seed"] = spec.get("training", {}).get(model, {}).get("seed")  # trained demo models
                cell = cells.get(key)
                if cell is None or cell.empty:
                    row.update(status="missing", missing="no grades for this cell")
                else:
                    gaps = _gaps(cell, spec["seeds"], problems.get(benchmark, set()))
                    row.update(status="partial" if gaps else "ok", missing=gaps or None)
                    dense = cells.get((model, dense_name, benchmark, budget, setting)) if dense_name else None
                    # every Wait setting resamples the same problems: settings compare like for like
                    row.update(cell_metrics(cell, dense, spec, key[:-1]))
                    row.update(compute.cost_of(cell, known))
                    if judgements is not None:
                        row.update(judge_metrics(cell))
                rows.append(row)
    table = pd.DataFrame(rows)
    if perplexity is not None and not perplexity.empty:
        table = table.merge(perplexity, on=["model", "variant"], how="left")
    return _ordered(table)


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    def k_of(column: str) -> int:
        return int(column.split("@")[1])

    passes = sorted((c for c in table.columns if c.startswith("pass@")), key=k_of)
    majs = sorted((c for c in table.columns if c.startswith("maj@")), key=k_of)
    head = CELL + ["status", "missing"] + VARIANT_FIELDS + [
        "accuracy", "accuracy_std", "ci_low", "ci_high", "n_problems", "n_seeds", "n_samples",
        "delta_vs_dense", "delta_ci_low", "delta_ci_high"]
    tail = ["mean_thinking_tokens", "mean_answer_tokens", "budget_hit_rate", "no_answer_rate", "ambiguous_rate",
            "timeout_rate"]
    for column in head + tail:
        if column not in table.columns:
            table[column] = np.nan
    rest = [c for c in table.columns if c not in head + tail + passes + majs]
    return table[head + passes + majs + tail + rest]


def read_grades(paths: list[str]) -> pd.DataFrame:
    frames = [read_table(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=CELL + ["problem_id", "seed", "sample", "correct", "status", "extracted",
                                            "thinking_tokens", "answer_tokens", "hit_budget"])
    return pd.concat(frames, ignore_index=True)


def read_facts(paths: list[str]) -> dict[tuple[str, str], dict]:
    """(model, variant) -> its compute facts, from the `compute` record the generate stage left
    in each grades file's metadata (pipeline.reporting.compute.combine)."""
    records: dict[tuple[str, str], list[dict]] = {}
    for path in paths:
        try:
            record = read_provenance(path).get("compute")
        except ValueError:
            record = None
        ids = pq.read_table(path, columns=["model", "variant"]).slice(0, 1).to_pylist()
        if record and ids:
            records.setdefault((ids[0]["model"], ids[0]["variant"]), []).append(record)
    return {key: compute.combine(found) for key, found in records.items()}


def read_perplexity(paths: list[str]) -> pd.DataFrame:
    """One row per (model, variant): `perplexity`, or `perplexity_<dataset>` for several data
    sets. Model and variant come from the table's columns or from the path
    results/perplexity/{model}/{variant}.parquet."""
    rows = []
    for path in paths:
        table = read_table(path)
        model = table["model"].iloc[0] if "model" in table else Path(path).parent.name
        variant = table["variant"].iloc[0] if "variant" in table else Path(path).stem
        row = {"model": model, "variant": variant}
        if "dataset" in table and table["dataset"].nunique() > 1:
            row.update({f"perplexity_{d}": float(p) for d, p in zip(table["dataset"], table["perplexity"])})
        else:
            row["perplexity"] = float(table["perplexity"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grades", nargs="+", required=True, help="grades Parquet files (pipeline.stages.grade)")
    parser.add_argument("--perplexity", nargs="*", default=[], help="perplexity Parquet files")
    parser.add_argument("--judgements", nargs="*", default=[], help="judgements Parquet files (pipeline.stages.judge)")
    parser.add_argument("--spec", required=True, help="pipeline.core.slices.table_slice as JSON (or @file)")
    parser.add_argument("--out", required=True, help="main table CSV; pivots are written beside it")
    parser.add_argument("--strict", action="store_true", help="fail when a cell is missing or partial")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "aggregate", spec)  # the workflow's own refusals, before loading
    judgements = pd.concat([read_table(p) for p in args.judgements], ignore_index=True) if args.judgements else None
    grades = read_grades(args.grades)
    table = main_table(grades, spec, read_perplexity(args.perplexity) if args.perplexity else None,
                       judgements, read_facts(args.grades))
    incomplete = table[table["status"] != "ok"]
    several = len(tables.wait_settings(spec)) > 1
    for row in incomplete.itertuples():
        wait = f" / {tables.wait_label(row.wait_times)}" if several else ""
        print(f"{row.status}: {row.model} / {row.variant} / {row.benchmark} / budget {row.budget}{wait}: {row.missing}",
              file=sys.stderr)
    if args.strict and not incomplete.empty:
        print(f"error: {len(incomplete)} of {len(table)} cells are not complete (--strict)", file=sys.stderr)
        return 1
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    written = tables.write_pivots(table, spec, Path(args.out).parent)
    grades = grades.assign(problem_id=grades["problem_id"].astype(str), correct=grades["correct"].astype(bool))
    written += equal_compute.write(grades, table, spec, Path(args.out).parent)
    written += claims.write(grades, table, spec, Path(args.out).parent)
    written += tables.write_seed_spread(table, spec, Path(args.out).parent)
    print(f"{len(table)} cells ({len(incomplete)} not complete) -> {args.out}; pivots: {len(written)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
