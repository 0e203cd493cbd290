"""Pruned against dense at equal compute: results/tables/equal-compute-{model}.{csv,md}.

For each pruned variant, budget, benchmark, Wait setting and accounting (docs/COMPUTE.md), the
dense model's accuracy at the variant's compute per problem, read off dense's own curve over its
budgets: linear in log compute between the two dense budgets around it, never past the curve's
ends (there the row says the curves do not overlap and gives no number). The interval is the
main table's bootstrap over problems, paired: each resample draws problems once and recomputes
the variant's accuracy and every dense point from them; the compute, and so the interpolation
weights, stay at their point estimates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.reporting.compute import ACCOUNTINGS
from pipeline.reporting.tables import (cell_rng, labels, paired, problem_scores, variant_order, wait_label,
                                       wait_settings, write_model_tables)

COLUMNS = ["model", "benchmark", "wait_times", "variant", "description", "budget", "accounting", "flops_per_problem",
           "accuracy", "dense_accuracy_at_equal_compute", "difference", "difference_ci_low", "difference_ci_high",
           "dense_budgets_between", "verdict"]


def bracket(curve_x: np.ndarray, x: float) -> tuple[int, int, float] | str:
    """Where `x` falls on a curve sampled at `curve_x` (ascending): (i, j, w) with the value at x
    = (1 - w) * y[i] + w * y[j], linear in log x; "below" or "above" outside the curve's range."""
    curve_x = np.asarray(curve_x, dtype=float)
    if len(curve_x) == 0 or not np.isfinite(x) or x <= 0:
        return "below"
    if x < curve_x[0]:
        return "below"
    if x > curve_x[-1]:
        return "above"
    j = int(np.searchsorted(curve_x, x, side="left"))
    if curve_x[j] == x:
        return j, j, 0.0
    i = j - 1
    w = (np.log(x) - np.log(curve_x[i])) / (np.log(curve_x[j]) - np.log(curve_x[i]))
    return i, j, float(w)


def interpolate(curve_x, curve_y, x: float) -> float | str:
    """Dense's accuracy at compute `x`; "below"/"above" where that would be extrapolation."""
    where = bracket(curve_x, x)
    if isinstance(where, str):
        return where
    i, j, w = where
    return float((1 - w) * curve_y[i] + w * curve_y[j])


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "pruned ahead at equal compute"
    if high < 0:
        return "dense ahead at equal compute"
    return "no clear difference"


def equal_compute(grades: pd.DataFrame, table: pd.DataFrame, spec: dict, model: str) -> pd.DataFrame:
    """The rows of one model's equal-compute table. `grades`: problem_id as str, correct as
    bool; `table`: the main table with its flops_per_problem_* columns."""
    variants = spec["variants"]
    dense_name = next((v for v in variant_order(spec) if variants[v]["method"] == "dense"), None)
    resamples, confidence = spec.get("bootstrap", 1000), spec.get("confidence", 0.95)
    tail = (1 - confidence) / 2
    part = table[(table["model"] == model) & (table["status"] != "missing")]
    names = labels(table[table["model"] == model], spec)
    cells = {key: problem_scores(cell) for key, cell in grades[grades["model"] == model].groupby(
        ["variant", "benchmark", "budget", "wait_times"])}
    rows = []
    if dense_name is None:
        return pd.DataFrame(columns=COLUMNS)
    for benchmark in spec["benchmarks"]:
        for setting in wait_settings(spec):
            here = part[(part["benchmark"] == benchmark) & (part["wait_times"] == setting)]
            for accounting in ACCOUNTINGS:
                column = f"flops_per_problem_{accounting}"
                if column not in here:
                    continue
                dense = here[(here["variant"] == dense_name) & here[column].notna()].sort_values(column)
                dense_keys = [(dense_name, benchmark, b, setting) for b in dense["budget"]]
                for variant in variant_order(spec):
                    if variant == dense_name:
                        continue
                    for row in here[here["variant"] == variant].sort_values("budget").itertuples():
                        rows.append(_row(row, accounting, getattr(row, column), dense, column, dense_keys, cells,
                                         names.get(variant, variant), resamples, tail))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(row, accounting, x, dense, column, dense_keys, cells, description, resamples, tail) -> dict:
    out = {"model": row.model, "benchmark": row.benchmark, "wait_times": row.wait_times, "variant": row.variant,
           "description": description, "budget": row.budget, "accounting": accounting, "flops_per_problem": x,
           "accuracy": row.accuracy}
    curve_x = dense[column].to_numpy(dtype=float)
    where = bracket(curve_x, x) if pd.notna(x) else "unknown"
    if isinstance(where, str):
        out["verdict"] = {
            "below": "no overlap: cheaper than dense's smallest budget",
            "above": "no overlap: costlier than dense's largest budget",
            "unknown": "compute unknown (no compute facts recorded)"}[where]
        if where != "unknown" and len(curve_x) == 0:
            out["verdict"] = "no overlap: dense has no compute"
        return out
    i, j, w = where
    budgets = dense["budget"].to_numpy()
    out["dense_budgets_between"] = f"{budgets[i]}" if i == j else f"{budgets[i]}-{budgets[j]}"
    mine = cells.get((row.variant, row.benchmark, row.budget, row.wait_times))
    pair = [cells.get(dense_keys[i]), cells.get(dense_keys[j])]
    if mine is None or any(p is None for p in pair):
        out["verdict"] = "no grades for the bootstrap"
        return out
    # problems every series has, so that one resample draws the same problems for all three
    joined = paired(mine, paired(*pair)).to_numpy(dtype=float)
    point = joined.mean(axis=0)
    dense_at = (1 - w) * point[1] + w * point[2]
    rng = cell_rng("equal", row.model, row.variant, row.benchmark, row.budget, row.wait_times, accounting)
    index = rng.integers(0, len(joined), size=(resamples, len(joined)))
    means = joined[index].mean(axis=1)
    differences = means[:, 0] - ((1 - w) * means[:, 1] + w * means[:, 2])
    low, high = float(np.quantile(differences, tail)), float(np.quantile(differences, 1 - tail))
    out.update(dense_accuracy_at_equal_compute=float(dense_at), difference=float(point[0] - dense_at),
               difference_ci_low=low, difference_ci_high=high, verdict=verdict(low, high))
    return out


def paths(out_dir: str | Path, model: str) -> tuple[Path, Path]:
    return Path(out_dir) / f"equal-compute-{model}.csv", Path(out_dir) / f"equal-compute-{model}.md"


def per_token(table: pd.DataFrame, model: str, spec: dict) -> list[str]:
    """What one generated token costs per variant, and what generation measured (docs/COMPUTE.md)."""
    part = table[table["model"] == model].drop_duplicates("variant").set_index("variant")
    if "flops_per_token_dense_hw" not in part:
        return []
    names = labels(table[table["model"] == model], spec)
    lines = [f"### {model}: cost of one generated token", "",
             "FLOPs per token without attention over the context (which adds attention FLOPs per context token "
             "for every position attended to); tokens/s: generation only, engine start apart", "",
             "| variant | params | nonzero params | blocks kept | FLOPs/token dense hw | FLOPs/token ideal sparse | "
             "attention FLOPs per context token | checkpoint bytes | tokens/s |", "|---|---|---|---|---|---|---|---|---|"]

    def number(value, form):
        return format(value, form) if pd.notna(value) else "-"

    columns = [("params", ",.0f"), ("nonzero_params", ",.0f"), ("blocks_kept", ".0f"),
               ("flops_per_token_dense_hw", ".3g"), ("flops_per_token_ideal_sparse", ".3g"),
               ("attention_flops_per_context_token", ".3g"), ("checkpoint_bytes", ",.0f"),
               ("generation_tokens_per_s", ".1f")]
    for variant in variant_order(spec):
        if variant in part.index:
            cells = [number(part.loc[variant, column], form) for column, form in columns]
            lines.append(f"| {names.get(variant, variant)} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(rows: pd.DataFrame, model: str, spec: dict, table: pd.DataFrame | None = None) -> str:
    confidence = spec.get("confidence", 0.95)
    lines = (per_token(table, model, spec) if table is not None else []) + [
             f"### {model}: pruned against dense at equal compute", "",
             "compute: mean FLOPs per problem (all samples); dense at equal compute: dense's accuracy "
             "interpolated (linear in log compute) between its budgets around that compute, never "
             f"extrapolated; difference: variant minus dense, with a paired bootstrap {confidence:.0%} "
             "interval over problems (docs/COMPUTE.md)", ""]
    several = len(wait_settings(spec)) > 1
    for (benchmark, setting, accounting), part in rows.groupby(["benchmark", "wait_times", "accounting"], sort=False):
        wait = f", {wait_label(setting)}" if several else ""
        lines += [f"#### {benchmark}{wait}, {accounting.replace('_', ' ')} accounting", "",
                  "| variant | budget | FLOPs per problem | accuracy | dense at equal compute | difference | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for r in part.itertuples():
            compute = f"{r.flops_per_problem:.3g}" if pd.notna(r.flops_per_problem) else "-"
            if pd.notna(r.difference):
                dense, diff = (f"{r.dense_accuracy_at_equal_compute:.3f}",
                               f"{r.difference:+.3f} [{r.difference_ci_low:+.3f}, {r.difference_ci_high:+.3f}]")
            else:
                dense, diff = "-", "-"
            lines.append(f"| {r.description} | {r.budget} | {compute} | {r.accuracy:.3f} | {dense} | {diff} | "
                         f"{r.verdict} |")
        lines.append("")
    return "\n".join(lines)


def write(grades: pd.DataFrame, table: pd.DataFrame, spec: dict, out_dir: str | Path) -> list[Path]:
    return write_model_tables(spec, out_dir, paths, lambda model: equal_compute(grades, table, spec, model),
                              lambda rows, model: markdown(rows, model, spec, table))
