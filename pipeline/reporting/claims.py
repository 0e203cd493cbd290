"""The study's claims per model, each tested across the grid: results/tables/claims-{model}.{csv,md}.

Comparisons (first against second), found from the variants:
- "vs dense": each pruned variant against the dense one ("pruned ahead" / "dense ahead");
- "allocation": each non-uniform allocation against uniform at the same method, sparsity and
  calibration ("<allocation> ahead" / "uniform ahead");
- "unstructured vs structured": each block-removing variant (k of L blocks) against every
  unstructured variant at sparsity k/L, any method and allocation, L from `depths` (demo models)
  or the dense variant's blocks_kept ("unstructured ahead" / "structured ahead");
- "named": the pairs of tables.claims.pairs.

Each is tested per benchmark, budget and Wait setting, and pooled over benchmarks per budget and
Wait setting (benchmark "(pooled)"; tables.claims.pooling: every problem weighs the same, or
every benchmark). The unit is the problem, paired as the main table's intervals pair it
(tables.problem_scores, tables.paired); the test is a paired t-test on the per-problem
differences (stratified by benchmark when pooled); the family corrected together
(tables.correction: bh, Benjamini-Hochberg; holm) is every row of the model's table. A verdict
is "<first> ahead" or "<second> ahead" where the corrected test rejects at level
1 - tables.confidence, else "too small to detect" where the observed difference is below the
minimum detectable difference (pipeline.reporting.power, at tables.claims.power), else "no
difference the grid can detect". Methods and references: docs/STATISTICS.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pipeline.core.slices import STRUCTURED, UNSTRUCTURED
from pipeline.reporting import power as pw
from pipeline.reporting.tables import (labels, paired, problem_scores, variant_order, wait_label, wait_settings,
                                      write_model_tables)

POOLED = "(pooled)"  # no benchmark name can hold parentheses (config/schema.yaml)
CORRECTIONS = {"bh": ("fdr_bh", "Benjamini-Hochberg false discovery rate"), "holm": ("holm", "Holm family-wise error")}
COLUMNS = ["model", "kind", "comparison", "first", "second", "benchmark", "budget", "wait_times", "n_problems",
           "draws", "first_accuracy", "second_accuracy", "difference", "ci_low", "ci_high", "p_value",
           "p_corrected", "ci_low_corrected", "ci_high_corrected", "mdd", "sd_between", "sd_within", "verdict"]
NO_GRADES = "no grades to compare"


class Comparison(NamedTuple):
    kind: str
    first: str
    second: str
    first_role: str
    second_role: str


def settings(spec: dict) -> dict:
    """tables.claims with its defaults (config/schema.yaml), the level and the correction."""
    claims = {"power": 0.8, "pooling": "problems", "pairs": [], **spec.get("claims", {})}
    return {**claims, "alpha": 1 - spec.get("confidence", 0.95), "correction": spec.get("correction", "bh")}


def depth(spec: dict, table: pd.DataFrame, model: str, dense: str | None) -> int | None:
    """The model's blocks: the config's (demo models) or what the dense variant kept."""
    if model in spec.get("depths", {}):
        return int(spec["depths"][model])
    if dense is None or "blocks_kept" not in table:
        return None
    kept = table.loc[(table["model"] == model) & (table["variant"] == dense), "blocks_kept"].dropna()
    return int(kept.iloc[0]) if len(kept) else None


def comparisons(spec: dict, blocks: int | None = None) -> list[Comparison]:
    variants = spec["variants"]
    order = variant_order(spec)
    dense = next((v for v in order if variants[v]["method"] == "dense"), None)
    found = [Comparison("vs dense", v, dense, "pruned", "dense") for v in order if dense and v != dense]

    def same_but_allocation(a: dict, b: dict) -> bool:
        return all(a.get(k) == b.get(k) for k in ("method", "sparsity", "nm", "calibration"))

    for v in order:
        allocation = variants[v].get("allocation", "uniform")
        if variants[v]["method"] in UNSTRUCTURED and allocation != "uniform":
            found += [Comparison("allocation", v, u, allocation, "uniform") for u in order
                      if variants[u]["method"] in UNSTRUCTURED and variants[u].get("allocation", "uniform") == "uniform"
                      and same_but_allocation(variants[v], variants[u])]
    for s in order:
        if variants[s]["method"] in STRUCTURED and blocks:
            share = variants[s]["layers"] / blocks
            found += [Comparison("unstructured vs structured", u, s, "unstructured", "structured") for u in order
                      if variants[u]["method"] in UNSTRUCTURED and not variants[u].get("nm")
                      and variants[u].get("sparsity") is not None and math.isclose(variants[u]["sparsity"], share,
                                                                                   abs_tol=1e-6)]
    known = {(c.first, c.second) for c in found}
    found += [Comparison("named", a, b, a, b) for a, b in settings(spec)["pairs"] if (a, b) not in known]
    return found


class Part(NamedTuple):
    """One comparison on one benchmark: per-problem differences and what the power needs."""
    differences: np.ndarray
    first: float
    second: float
    between: float
    within: float
    draws: float


def part(first: pd.DataFrame, second: pd.DataFrame) -> Part | None:
    """The paired per-problem differences of two cells (grades rows), over the problems both have."""
    both = paired(problem_scores(first), problem_scores(second))
    if both.empty:
        return None
    draws = paired(first.groupby("problem_id").size(), second.groupby("problem_id").size()).loc[both.index]
    return from_scores(*(both.iloc[:, i].to_numpy(float) for i in (0, 1)),
                       *(draws.iloc[:, i].to_numpy(float) for i in (0, 1)))


def from_scores(a: np.ndarray, b: np.ndarray, ma: np.ndarray, mb: np.ndarray) -> Part:
    """A part from paired per-problem scores `a`, `b` (means of `ma`, `mb` draws)."""
    between, within = pw.variance_parts(a - b, pw.within_variance(a, ma), pw.within_variance(b, mb), ma, mb)
    return Part(a - b, float(a.mean()), float(b.mean()), between, within, float(np.mean((ma + mb) / 2)))


def paired_test(parts: list[Part], weights: str, alpha: float, power: float) -> dict:
    """The stratified paired t-test of parts (one per benchmark; one part: the paired t-test),
    its interval and the minimum detectable difference. weights: "problems" (each problem the
    same) or "benchmarks" (each benchmark the same)."""
    n = np.array([len(p.differences) for p in parts], dtype=float)
    w = n / n.sum() if weights == "problems" else np.full(len(parts), 1 / len(parts))
    estimate = float(sum(wi * p.differences.mean() for wi, p in zip(w, parts)))
    variances = np.array([np.var(p.differences, ddof=1) if len(p.differences) > 1 else np.nan for p in parts])
    terms = w ** 2 * variances / n
    se = float(np.sqrt(terms.sum()))
    # Welch-Satterthwaite degrees of freedom; n - 1 for one benchmark
    df = float(terms.sum() ** 2 / np.sum(terms ** 2 / (n - 1))) if se > 0 else float(n.sum() - len(parts))
    out = {"n_problems": int(n.sum()), "difference": estimate, "first_accuracy": float(sum(wi * p.first for wi, p in zip(w, parts))),
           "second_accuracy": float(sum(wi * p.second for wi, p in zip(w, parts))),
           "draws": float(np.mean([p.draws for p in parts])), "se": se, "df": df}
    if not np.isfinite(se) or df < 1:
        return {**out, "p_value": np.nan, "mdd": np.nan}
    if se == 0:  # every problem's difference the same: no noise to test against
        out["p_value"] = 1.0 if estimate == 0 else 0.0
    else:
        out["p_value"] = float(2 * stats.t.sf(abs(estimate) / se, df))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    design = np.sqrt(np.sum(w ** 2 * np.array([p.between + p.within / p.draws for p in parts]) / n))
    out.update(ci_low=estimate - half, ci_high=estimate + half,
               mdd=pw.multiplier(int(round(df)) + 1, alpha, power) * float(design))
    if len(parts) == 1:
        out.update(sd_between=math.sqrt(parts[0].between), sd_within=math.sqrt(parts[0].within))
    return out


def claims(grades: pd.DataFrame, table: pd.DataFrame, spec: dict, model: str) -> pd.DataFrame:
    """The rows of one model's claims table. `grades`: problem_id as str, correct as bool."""
    opts = settings(spec)
    dense = next((v for v in variant_order(spec) if spec["variants"][v]["method"] == "dense"), None)
    names = labels(table[table["model"] == model], spec)
    cells = dict(list(grades[grades["model"] == model].groupby(["variant", "benchmark", "budget", "wait_times"])))
    rows = []
    blocks = depth(spec, table, model, dense)
    found = comparisons(spec, blocks)
    partnered = {c.second for c in found if c.kind == "unstructured vs structured"}
    # block removal with no unstructured variant at its share: said, so the reader names a pair
    unmatched = [f"{names.get(v, v)} ({spec['variants'][v]['layers']} of {blocks or '?'} blocks)" for v in variant_order(spec)
                 if spec["variants"][v]["method"] in STRUCTURED and v not in partnered]
    for c in found:
        text = f"{names.get(c.first, c.first)} against {names.get(c.second, c.second)}"
        for budget in spec["budgets"]:
            for setting in wait_settings(spec):
                parts = {}
                for benchmark in spec["benchmarks"]:
                    first, second = (cells.get((v, benchmark, budget, setting)) for v in (c.first, c.second))
                    paired_part = part(first, second) if first is not None and second is not None else None
                    if paired_part is not None:
                        parts[benchmark] = paired_part
                groups = [(b, [parts[b]] if b in parts else []) for b in spec["benchmarks"]]
                if len(spec["benchmarks"]) > 1:
                    groups.append((POOLED, list(parts.values())))
                for benchmark, tested in groups:
                    row = {"model": model, "kind": c.kind, "comparison": text, "first": c.first, "second": c.second,
                           "benchmark": benchmark, "budget": budget, "wait_times": setting,
                           "first_role": c.first_role, "second_role": c.second_role}
                    if tested:
                        row.update(paired_test(tested, opts["pooling"], opts["alpha"], opts["power"]))
                    rows.append(row)
    frame = pd.DataFrame(rows)
    for column in COLUMNS + ["se", "df", "first_role", "second_role"]:
        if column not in frame:
            frame[column] = np.nan
    frame = correct(frame, opts)
    frame.attrs["unmatched"] = unmatched
    return frame


def correct(frame: pd.DataFrame, opts: dict) -> pd.DataFrame:
    """Corrected p-values and intervals over every tested row, and the verdicts."""
    alpha = opts["alpha"]
    tested = frame["p_value"].notna()
    frame["p_corrected"] = np.nan
    reject = pd.Series(False, index=frame.index)
    if tested.any():
        decided, corrected, _, _ = multipletests(frame.loc[tested, "p_value"], alpha=alpha,
                                                 method=CORRECTIONS[opts["correction"]][0])
        frame.loc[tested, "p_corrected"] = corrected
        reject[tested] = decided
    m = int(tested.sum())
    # the interval at the corrected level: Bonferroni's alpha/m for Holm; for BH the false
    # coverage-rate level R alpha / m of Benjamini and Yekutieli (2005), R the discoveries
    level = alpha / max(m, 1) if opts["correction"] == "holm" else alpha * max(int(reject.sum()), 1) / max(m, 1)
    half = stats.t.ppf(1 - level / 2, frame["df"].where(frame["se"] > 0)) * frame["se"]
    frame["ci_low_corrected"], frame["ci_high_corrected"] = frame["difference"] - half, frame["difference"] + half
    sure = frame["se"] == 0  # no noise: the interval is the point
    frame.loc[sure, ["ci_low_corrected", "ci_high_corrected"]] = frame.loc[sure, ["difference", "difference"]].to_numpy()
    frame.loc[sure, ["ci_low", "ci_high"]] = frame.loc[sure, ["difference", "difference"]].to_numpy()

    def verdict(row, rejected) -> str:
        if pd.isna(row.p_value):
            return NO_GRADES
        if rejected:
            return f"{row.first_role if row.difference > 0 else row.second_role} ahead"
        if abs(row.difference) <= row.mdd:
            return "too small to detect"
        return "no difference the grid can detect"

    frame["verdict"] = [verdict(row, r) for row, r in zip(frame.itertuples(), reject)]
    frame.attrs.update(family=m, level=level, discoveries=int(reject.sum()))
    return frame


def paths(out_dir: str | Path, model: str) -> tuple[Path, Path]:
    return Path(out_dir) / f"claims-{model}.csv", Path(out_dir) / f"claims-{model}.md"


def _cell(row) -> str:
    if pd.isna(row.p_value):
        return NO_GRADES
    return f"{row.verdict} ({row.difference:+.3f}, p adj {row.p_corrected:.2g})"


def markdown(frame: pd.DataFrame, model: str, spec: dict) -> str:
    opts = settings(spec)
    several = len(wait_settings(spec)) > 1
    name = CORRECTIONS[opts["correction"]][1]
    weighting = "every problem weighs the same" if opts["pooling"] == "problems" else "every benchmark weighs the same"
    lines = [f"### {model}: the study's claims, tested across the grid", "",
             f"{frame.attrs.get('family', 0)} tests corrected together ({name} at {opts['alpha']:.2g}); "
             f"{frame.attrs.get('discoveries', 0)} survive the correction. Difference: first minus second, "
             "with its paired t interval over problems (raw, and at the corrected level); MDD: the minimum "
             f"detectable difference at level {opts['alpha']:.2g} and power {opts['power']:.0%}; pooled: over "
             f"benchmarks, {weighting}. Methods: docs/STATISTICS.md.", ""]
    if frame.attrs.get("unmatched"):
        lines += ["No unstructured variant prunes the share of block parameters that "
                  + ", ".join(frame.attrs["unmatched"]) + " removes: add one at that sparsity, or name the pairs "
                  "in tables.claims.pairs.", ""]
    for setting in wait_settings(spec):
        part = frame[frame["wait_times"] == setting]
        pooled = part[part["benchmark"] == (POOLED if len(spec["benchmarks"]) > 1 else spec["benchmarks"][0])]
        wait = f", {wait_label(setting)}" if several else ""
        budgets = spec["budgets"]
        lines += [f"#### Verdicts per budget, {'pooled over benchmarks' if len(spec['benchmarks']) > 1 else spec['benchmarks'][0]}{wait}",
                  "", "| comparison | " + " | ".join(str(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for comparison, rows in pooled.groupby("comparison", sort=False):
            by = rows.set_index("budget")
            lines.append(f"| {comparison} | " + " | ".join(_cell(by.loc[b]) for b in budgets) + " |")
        lines += ["", f"#### Minimum detectable difference per benchmark and budget{wait}: median over the "
                  "comparisons [smallest, largest]", "",
                  "| benchmark | " + " | ".join(str(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for benchmark, rows in part.groupby("benchmark", sort=False):
            mdd = rows.groupby("budget")["mdd"]
            med, low, high = mdd.median(), mdd.min(), mdd.max()
            lines.append(f"| {benchmark} | " + " | ".join(
                f"{med[b]:.3f} [{low[b]:.3f}, {high[b]:.3f}]" if pd.notna(med.get(b)) else "-" for b in budgets) + " |")
        lines.append("")
    lines += ["#### Every test", "", "| comparison | benchmark | budget | Wait | first | second | difference [raw] "
              "[corrected] | p | p corrected | MDD | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        if pd.isna(r.p_value):
            lines.append(f"| {r.comparison} | {r.benchmark} | {r.budget} | {r.wait_times} | - | - | - | - | - | - | {r.verdict} |")
            continue
        lines.append(f"| {r.comparison} | {r.benchmark} | {r.budget} | {r.wait_times} | {r.first_accuracy:.3f} | "
                     f"{r.second_accuracy:.3f} | {r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] "
                     f"[{r.ci_low_corrected:+.3f}, {r.ci_high_corrected:+.3f}] | {r.p_value:.2g} | "
                     f"{r.p_corrected:.2g} | {r.mdd:.3f} | {r.verdict} |")
    return "\n".join(lines) + "\n"


def write(grades: pd.DataFrame, table: pd.DataFrame, spec: dict, out_dir: str | Path) -> list[Path]:
    return write_model_tables(spec, out_dir, paths, lambda model: claims(grades, table, spec, model),
                              lambda frame, model: markdown(frame, model, spec), columns=COLUMNS)
