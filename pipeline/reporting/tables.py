"""Pivots of the main table in the shape of paper A's tables: one table per model and budget,
variants as rows, benchmarks as columns.

    results/tables/pivot-{model}-{budget}.csv   accuracy (empty where the cell is missing)
    results/tables/pivot-{model}-{budget}.md    accuracy ± std over seeds, delta vs dense
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.artifacts import atomic_path


def variant_order(spec: dict) -> list[str]:
    """The spec's variants with the dense baseline(s) first, as in the paper's tables."""
    return sorted(spec["variants"], key=lambda name: spec["variants"][name]["method"] != "dense")


def pivot_paths(out_dir: str | Path, model: str, budget: int) -> tuple[Path, Path]:
    stem = Path(out_dir) / f"pivot-{model}-{budget}"
    return stem.with_suffix(".csv"), stem.with_suffix(".md")


def describe(row) -> str:
    """A variant as the paper names it: "wanda 20% (owl)", "wanda 2:4", "shortgpt, 2 blocks
    removed", "dense"."""
    method = str(row["method"])
    if method == "dense":
        return "dense"
    if pd.notna(row.get("layers")):
        n = int(row["layers"])
        return f"{method}, {n} block{'s' if n > 1 else ''} removed"
    allocation = row.get("allocation")
    nm = row.get("nm")
    if isinstance(nm, str) and nm:
        sparsity = f" {nm}"
    else:
        sparsity = f" {row['sparsity']:.0%}" if pd.notna(row.get("sparsity")) else ""
    named = isinstance(allocation, str) and allocation != "uniform"
    return f"{method}{sparsity}" + (f" ({allocation})" if named else "")


def labels(table: pd.DataFrame, spec: dict) -> dict[str, str]:
    """variant -> its description, made unique: variants that read alike (the same method and
    sparsity with another calibration set, say) get their config name beside it."""
    rows = table.drop_duplicates("variant").set_index("variant")
    described = {v: describe(rows.loc[v]) for v in variant_order(spec) if v in rows.index}
    counts = pd.Series(list(described.values())).value_counts()
    return {v: text if counts[text] == 1 else f"{text} [{v}]" for v, text in described.items()}


def pivot(table: pd.DataFrame, model: str, budget: int, spec: dict) -> pd.DataFrame:
    """Accuracy of every variant (rows, spec order) on every benchmark (columns, spec order),
    with the mean over benchmarks when every benchmark has a value."""
    part = table[(table["model"] == model) & (table["budget"] == budget)]
    wide = part.pivot(index="variant", columns="benchmark", values="accuracy")
    wide = wide.reindex(index=variant_order(spec), columns=spec["benchmarks"])
    if len(spec["benchmarks"]) > 1:
        wide["mean"] = wide.mean(axis=1, skipna=False)
    names = labels(part, spec)
    wide.insert(0, "description", [names.get(v) for v in wide.index])
    wide.index.name = "variant"
    wide.columns.name = None
    return wide


def _markdown(table: pd.DataFrame, model: str, budget: int, spec: dict) -> str:
    part = table[(table["model"] == model) & (table["budget"] == budget)]
    names = labels(part, spec)
    part = part.set_index(["variant", "benchmark"])
    benchmarks = spec["benchmarks"]
    lines = [f"### {model}, thinking budget {budget}", "",
             "accuracy [bootstrap confidence interval over problems] ± std over seeds; "
             "Δ: difference to dense with its paired bootstrap interval",
             "", "| variant | " + " | ".join(benchmarks) + " |", "|---|" + "---|" * len(benchmarks)]
    for variant in variant_order(spec):
        cells = []
        for benchmark in benchmarks:
            row = part.loc[(variant, benchmark)]
            if row["status"] == "missing":
                cells.append("missing")
                continue
            text = f"{row['accuracy']:.4f}"
            if pd.notna(row.get("ci_low")):
                text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
            if pd.notna(row["accuracy_std"]):
                text += f" ± {row['accuracy_std']:.4f}"
            if pd.notna(row.get("delta_vs_dense")) and spec["variants"][variant]["method"] != "dense":
                text += f" (Δ {row['delta_vs_dense']:+.4f} [{row['delta_ci_low']:+.3f}, {row['delta_ci_high']:+.3f}])"
            if row["status"] == "partial":
                text += " (partial)"
            cells.append(text)
        lines.append(f"| {names[variant]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_pivots(table: pd.DataFrame, spec: dict, out_dir: str | Path) -> list[Path]:
    written = []
    for model in spec["models"]:
        for budget in spec["budgets"]:
            csv_path, md_path = pivot_paths(out_dir, model, budget)
            with atomic_path(csv_path) as tmp:
                pivot(table, model, budget, spec).replace({np.nan: None}).to_csv(tmp)
            with atomic_path(md_path) as tmp:
                tmp.write_text(_markdown(table, model, budget, spec))
            written += [csv_path, md_path]
    return written
