"""Perplexity against sparsity: the language-modelling cost of each way of pruning, as the
pruning papers report it (the aggregate stage writes the table, the plots stage the figure).

    results/tables/perplexity-{model}.csv|md       one row per variant: its share of block
                                                   weights removed, perplexity, ratio to dense
    results/plots/perplexity_vs_sparsity-{model}.{png,svg}
                                                   perplexity (log scale) against that share: a
                                                   line per unstructured method and allocation
                                                   from dense at 0 (a point where it was measured
                                                   at one sparsity), N:M patterns as points at
                                                   1 - N/M, removed blocks as a line at k / depth
                                                   (models of known depth)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.reporting.plots import MARKERS, line_styles, save_figure  # noqa: E402
from pipeline.reporting.tables import labels, variant_order, write_model_tables  # noqa: E402

COLUMNS = ["variant", "description", "method", "allocation", "pattern", "sparsity", "perplexity", "vs_dense"]


def table_paths(out_dir: str | Path, model: str) -> tuple[Path, Path]:
    return Path(out_dir) / f"perplexity-{model}.csv", Path(out_dir) / f"perplexity-{model}.md"


def figure_stem(out_dir: str | Path, model: str) -> Path:
    return Path(out_dir) / f"perplexity_vs_sparsity-{model}"


def _share(row, depth: int | None) -> float | None:
    """The share of block weights a variant removes: its sparsity, 1 - N/M, or k / depth."""
    if row["method"] == "dense":
        return 0.0
    if isinstance(row.get("nm"), str) and row["nm"]:
        n, m = map(int, row["nm"].split(":"))
        return 1 - n / m
    if pd.notna(row.get("layers")):
        return float(row["layers"]) / depth if depth else None
    return float(row["sparsity"]) if pd.notna(row.get("sparsity")) else None


def variant_table(table: pd.DataFrame, model: str, spec: dict) -> pd.DataFrame:
    """One row per variant of `model` that has a perplexity, in the spec's variant order."""
    part = table[(table["model"] == model) & table["perplexity"].notna()].drop_duplicates("variant")
    if part.empty:
        return pd.DataFrame(columns=COLUMNS)
    depth = spec.get("depths", {}).get(model)
    names = labels(part, spec)
    rows = part.set_index("variant").reindex([v for v in variant_order(spec) if v in set(part["variant"])])
    dense = rows.loc[rows["method"] == "dense", "perplexity"]
    out = pd.DataFrame({
        "variant": rows.index,
        "description": [names[v] for v in rows.index],
        "method": rows["method"].values,
        "allocation": [a if isinstance(a, str) and m not in ("dense", "shortgpt", "reverse") else ""
                       for a, m in zip(rows["allocation"], rows["method"])],
        "pattern": [nm if isinstance(nm, str) else "" for nm in rows["nm"]] if "nm" in rows else "",
        "sparsity": [_share(row, depth) for _, row in rows.reset_index().iterrows()],
        "perplexity": rows["perplexity"].values,
    })
    out["vs_dense"] = out["perplexity"] / dense.iloc[0] if not dense.empty else float("nan")
    return out[COLUMNS].reset_index(drop=True)


def write_tables(table: pd.DataFrame, spec: dict, out_dir: str | Path) -> list[Path]:
    """perplexity-{model}.csv and .md for every model whose variants have a perplexity."""
    if "perplexity" not in table:
        return []
    return write_model_tables(spec, out_dir, table_paths, lambda model: variant_table(table, model, spec), _markdown)


def _markdown(rows: pd.DataFrame, model: str) -> str:
    lines = [f"# {model}: perplexity by variant", "",
             "| variant | sparsity | perplexity | x dense |", "|---|---:|---:|---:|"]
    for row in rows.itertuples():
        share = "" if pd.isna(row.sparsity) else f"{row.sparsity:.1%}"
        lines.append(f"| {row.description} | {share} | {row.perplexity:.2f} | {row.vs_dense:.2f} |")
    return "\n".join(lines) + "\n"


def series(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame, bool]]:
    """(name, points by sparsity, joined) per unstructured method and allocation, and removed
    blocks, from variant_table's rows. A family measured at two sparsities or more is a line
    from dense at 0; one measured at a single sparsity (an allocation tried at 70% only) is
    that point alone: a line from dense would draw a curve through sparsities never measured."""
    dense = rows[rows["method"] == "dense"]
    lines = rows[(rows["pattern"] == "") & (rows["method"] != "dense")]
    out = []
    for method, allocation in lines[["method", "allocation"]].drop_duplicates().itertuples(index=False):
        own = lines[(lines["method"] == method) & (lines["allocation"] == allocation)]
        joined = own["sparsity"].nunique() > 1
        points = pd.concat([dense, own]) if joined else own
        out.append((f"{method} ({allocation})" if allocation else method, points.sort_values("sparsity"), joined))
    return out


def figure(table: pd.DataFrame, model: str, spec: dict, out_dir: str | Path) -> None:
    """perplexity_vs_sparsity-{model}: perplexity on a log axis against the share removed."""
    rows = variant_table(table, model, spec) if "perplexity" in table else pd.DataFrame(columns=COLUMNS)
    rows = rows[rows["sparsity"].notna()]
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    dense = rows[rows["method"] == "dense"]
    families = series(rows)
    patterns = sorted(p for p in rows["pattern"].unique() if p)
    styles = line_styles([name for name, _, _ in families], set())
    for name, points, joined in families:
        ax.plot(points["sparsity"], points["perplexity"], label=name, markersize=5 if joined else 8,
                **styles[name], **({} if joined else {"linestyle": "none"}))
    for index, pattern in enumerate(patterns):
        points = rows[rows["pattern"] == pattern]
        for _, point in points.iterrows():
            style = styles.get(f"{point['method']} (uniform)", {"color": "grey"})
            ax.plot([point["sparsity"]], [point["perplexity"]], linestyle="none", markersize=9,
                    marker=MARKERS[(index + 3) % len(MARKERS)], markerfacecolor="none", color=style["color"],
                    label=f"{point['method']} {pattern}")
    if not dense.empty:
        ax.plot([0.0], dense["perplexity"], marker="o", color="black", markersize=8, linestyle="none", label="dense",
                zorder=6)
    if rows.empty:
        ax.text(0.5, 0.5, "no perplexity measured", transform=ax.transAxes, ha="center", alpha=0.6)
    else:
        ax.set_yscale("log")
    ax.set_xlabel("share of block weights removed (sparsity, 1 - N/M, or blocks removed / depth)")
    ax.set_ylabel("perplexity (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    ax.set_title(f"{model}: perplexity vs sparsity")
    save_figure(fig, figure_stem(out_dir, model))
