"""Figures of the main table and of the demo's training, as PNG and SVG (the plots stage,
pipeline.stages.plots, draws the table's).

Per model (the spec is `pipeline.core.slices.table_slice`):
    accuracy_vs_budget-{model}.{png,svg}    one panel per benchmark; a line per variant with
                                            its bootstrap interval (sequential test-time scaling);
                                            with several Wait settings, a line per variant and
                                            setting, one line style per setting
    accuracy_vs_sparsity-{model}.{png,svg}  at the largest budget (and the smallest Wait
                                            setting): a line per unstructured method and
                                            allocation, from dense at sparsity 0; for a model of
                                            known depth (demo models), removed blocks as points
                                            at the share of block parameters they hold
    accuracy_vs_compute-{model}.{png,svg}   accuracy against mean FLOPs per problem (log scale),
                                            a line per variant through its budgets, a row
                                            per accounting (docs/COMPUTE.md)
    training_loss-{model}.{png,svg}         the demo model's loss per step (rule train_demo)

Per model and benchmark, and pooled over benchmarks (pipeline.reporting.claims):
    forest-{model}-{benchmark}.{png,svg}    each comparison's difference per budget with its raw
    forest-{model}--pooled.{png,svg}        and corrected intervals (a panel per Wait setting)

Per family of trained demo models that differ only in their training seed (two or more seeds):
    training_seeds-{family}.{png,svg}       top row: accuracy against budget, a line per variant
                                            through the mean across seeds and a band from the
                                            lowest seed to the highest; bottom row: at the largest
                                            budget, each seed's accuracy per variant (smallest
                                            Wait setting throughout)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.core.artifacts import atomic_path  # noqa: E402
from pipeline.reporting.claims import POOLED  # noqa: E402
from pipeline.reporting.compute import ACCOUNTINGS  # noqa: E402
from pipeline.reporting.tables import (FORMATS, labels, seed_families, seed_spread, variant_order,  # noqa: E402
                                      wait_label, wait_settings)

TABLE_FIGURES = ("accuracy_vs_budget", "accuracy_vs_sparsity", "accuracy_vs_compute")
# 20 colours and 7 markers: with 7 prime to 20, no two of the first 140 lines share both
PALETTE = [plt.get_cmap("tab20")(i) for i in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)]
MARKERS = ["s", "^", "D", "v", "P", "X", "<"]
# one per Wait setting, solid for the first (the smallest)
LINESTYLES = ["-", "--", ":", "-."]
# reproducible SVGs: no timestamp, fixed element ids
matplotlib.rcParams["svg.hashsalt"] = "prune-tts"


def plot_paths(out_dir: str | Path, model: str) -> list[Path]:
    return [Path(out_dir) / f"{kind}-{model}.{fmt}" for kind in TABLE_FIGURES for fmt in FORMATS]


def _panels(benchmarks: list[str]):
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.6), squeeze=False,
                             sharey=False, layout="constrained")
    return fig, dict(zip(benchmarks, axes[0]))


def save_figure(fig, stem: Path) -> None:
    for fmt in FORMATS:
        with atomic_path(Path(f"{stem}.{fmt}")) as tmp:  # not with_suffix: a model name may hold a dot
            fig.savefig(tmp, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)


def line_styles(names: list[str], dense: set[str]) -> dict[str, dict]:
    """One look per line, the same in every panel: dense black, thick and on top; every other
    line its own pair of colour and marker."""
    styles, index = {}, 0
    for name in names:
        if name in dense:
            styles[name] = {"color": "black", "marker": "o", "linewidth": 2.6, "zorder": 5}
        else:
            styles[name] = {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
                            "linewidth": 1.3, "zorder": 3}
            index += 1
    return styles


def _draw(ax, x, line: pd.DataFrame, label: str, style: dict) -> None:
    ax.plot(x, line["accuracy"], label=label, markersize=5, **style)
    ax.fill_between(x, line["ci_low"], line["ci_high"], color=style["color"], alpha=0.12, linewidth=0,
                    zorder=style["zorder"] - 1)


def accuracy_vs_budget(table: pd.DataFrame, model: str, spec: dict, out_dir: Path) -> None:
    fig, axes = _panels(spec["benchmarks"])
    part = table[(table["model"] == model) & (table["status"] != "missing")]
    order = variant_order(spec)
    names = labels(part, spec)
    styles = line_styles(order, {v for v in order if spec["variants"][v]["method"] == "dense"})
    settings = wait_settings(spec)
    for benchmark, ax in axes.items():
        for variant in order:
            for index, setting in enumerate(settings):
                line = part[(part["benchmark"] == benchmark) & (part["variant"] == variant)
                            & (part["wait_times"] == setting)].sort_values("budget")
                if line.empty:
                    continue
                # a variant keeps its colour and marker; the setting picks the line style, named
                # once in the legend rather than beside every variant
                style = {**styles[variant], "linestyle": LINESTYLES[index % len(LINESTYLES)]}
                _draw(ax, line["budget"], line, names[variant] if index == 0 else "_nolegend_", style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(spec["budgets"], [str(b) for b in spec["budgets"]])
        _style(ax, benchmark, "thinking budget (tokens)")
    keys = [Line2D([], [], color="grey", linestyle=LINESTYLES[i % len(LINESTYLES)], label=wait_label(setting))
            for i, setting in enumerate(settings)] if len(settings) > 1 else []
    _finish(fig, axes, f"{model}: accuracy vs thinking budget", out_dir / f"accuracy_vs_budget-{model}", keys)


def _style(ax, benchmark: str, xlabel: str) -> None:
    ax.set_title(benchmark)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)  # accuracy is a fraction: a fixed axis keeps panels comparable
    ax.grid(alpha=0.3)


def _finish(fig, axes: dict, title: str, path: Path, keys: list | None = None) -> None:
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    handles, labels = handles + (keys or []), labels + [key.get_label() for key in keys or []]
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle(title)
    save_figure(fig, path)


def accuracy_vs_sparsity(table: pd.DataFrame, model: str, spec: dict, out_dir: Path) -> None:
    budget = max(spec["budgets"])
    settings = wait_settings(spec)
    fig, axes = _panels(spec["benchmarks"])
    # the smallest Wait setting: plain budget forcing when 0 is listed
    part = table[(table["model"] == model) & (table["budget"] == budget) & (table["wait_times"] == settings[0])
                 & (table["status"] != "missing")]
    dense = part[part["method"] == "dense"]
    unstructured = part[part["sparsity"].notna() & (part["method"] != "dense")]
    families = unstructured[["method", "allocation"]].drop_duplicates().itertuples(index=False)
    families = list(families)
    # removing k of a model's L blocks removes the fraction k / L of its block parameters: shown
    # at that sparsity, beside the unstructured methods (paper A compares them so)
    depth = spec.get("depths", {}).get(model)
    structured = part[part["layers"].notna() & (part["method"] != "dense")] if depth else part.iloc[:0]
    names = labels(structured, spec)
    styles = line_styles([f"{method} ({allocation})" for method, allocation in families]
                         + sorted(set(names.values())), set())
    for benchmark, ax in axes.items():
        base = dense[dense["benchmark"] == benchmark].head(1)
        for method, allocation in families:
            line = unstructured[(unstructured["benchmark"] == benchmark) & (unstructured["method"] == method)
                                & (unstructured["allocation"] == allocation)]
            line = pd.concat([base.assign(sparsity=0.0), line]).sort_values("sparsity")
            name = f"{method} ({allocation})"
            _draw(ax, line["sparsity"], line, name, styles[name])
        for variant, point in structured[structured["benchmark"] == benchmark].groupby("variant", sort=False):
            style, x = styles[names[variant]], point["layers"] / depth
            ax.errorbar(x, point["accuracy"], yerr=[(point["accuracy"] - point["ci_low"]).clip(lower=0),
                                                    (point["ci_high"] - point["accuracy"]).clip(lower=0)],
                        label=names[variant], color=style["color"], marker=style["marker"], markersize=8,
                        linestyle="none", capsize=3, zorder=style["zorder"])
        if not base.empty:
            ax.plot([0.0], base["accuracy"], marker="o", color="black", markersize=8, linestyle="none",
                    label="dense", zorder=6)
        if not families:
            ax.text(0.5, 0.5, "no unstructured variants", transform=ax.transAxes, ha="center", alpha=0.6)
        _style(ax, benchmark, "share of block parameters removed" if depth else "sparsity")
    wait = f", {wait_label(settings[0])}" if len(settings) > 1 else ""
    _finish(fig, axes, f"{model}: accuracy vs sparsity (thinking budget {budget}{wait})",
            out_dir / f"accuracy_vs_sparsity-{model}")


def accuracy_vs_compute(table: pd.DataFrame, model: str, spec: dict, out_dir: Path) -> None:
    """One panel per accounting (rows) and benchmark (columns): a variant's line runs through its
    budgets at the compute each actually spent, so equal x is equal cost."""
    benchmarks = spec["benchmarks"]
    fig, grid = plt.subplots(len(ACCOUNTINGS), len(benchmarks), figsize=(5 * len(benchmarks), 3.4 * len(ACCOUNTINGS)),
                             squeeze=False, layout="constrained")
    named = {"dense_hw": "dense hardware", "ideal_sparse": "ideal sparse"}
    part = table[(table["model"] == model) & (table["status"] != "missing")]
    order = variant_order(spec)
    names = labels(part, spec)
    styles = line_styles(order, {v for v in order if spec["variants"][v]["method"] == "dense"})
    settings = wait_settings(spec)
    for row, accounting in enumerate(ACCOUNTINGS):
        column = f"flops_per_problem_{accounting}"
        for benchmark, ax in zip(benchmarks, grid[row]):
            drawn = False
            for variant in order:
                for index, setting in enumerate(settings):
                    line = part[(part["benchmark"] == benchmark) & (part["variant"] == variant)
                                & (part["wait_times"] == setting)]
                    if column not in line or line[column].isna().all():
                        continue
                    line = line[line[column].notna()].sort_values("budget")
                    style = {**styles[variant], "linestyle": LINESTYLES[index % len(LINESTYLES)]}
                    first = row == 0 and index == 0
                    _draw(ax, line[column], line, names[variant] if first else "_nolegend_", style)
                    drawn = True
            if drawn:
                ax.set_xscale("log")
            else:
                ax.text(0.5, 0.5, "no compute recorded", transform=ax.transAxes, ha="center", alpha=0.6)
            _style(ax, f"{benchmark}: {named[accounting]}", "FLOPs per problem")
    keys = [Line2D([], [], color="grey", linestyle=LINESTYLES[i % len(LINESTYLES)], label=wait_label(setting))
            for i, setting in enumerate(settings)] if len(settings) > 1 else []
    axes = {b: ax for b, ax in zip(benchmarks, grid[0])}
    _finish(fig, axes, f"{model}: accuracy vs compute",
            out_dir / f"accuracy_vs_compute-{model}", keys)


def training_seed_spread(table: pd.DataFrame, family: str, spec: dict, out_dir: Path) -> None:
    """What holds for every training seed: the mean and range of each variant's curve, and each
    seed's accuracy at the largest budget, where an ordering that flips shows as crossing points."""
    benchmarks, budget, setting = spec["benchmarks"], max(spec["budgets"]), wait_settings(spec)[0]
    training = spec["training"]
    models = seed_families(training)[family]
    seeds = sorted(training[m]["seed"] for m in models)
    spread = seed_spread(table, spec)
    spread = spread[(spread["family"] == family) & (spread["wait_times"] == setting)]
    part = table[table["model"].isin(models) & (table["status"] != "missing") & (table["budget"] == budget)
                 & (table["wait_times"] == setting)]
    order = [v for v in variant_order(spec) if v in set(spread["variant"])]
    names = labels(table[table["model"].isin(models)], spec)
    styles = line_styles(order, {v for v in order if spec["variants"][v]["method"] == "dense"})
    fig, grid = plt.subplots(2, len(benchmarks), figsize=(5 * len(benchmarks) + 2.5, 7.4), squeeze=False,
                             layout="constrained")
    for column, benchmark in enumerate(benchmarks):
        top, bottom = grid[0][column], grid[1][column]
        for variant in order:
            line = spread[(spread["benchmark"] == benchmark) & (spread["variant"] == variant)].sort_values("budget")
            if line.empty:
                continue
            style = styles[variant]
            top.plot(line["budget"], line["accuracy_mean"], label=names[variant], markersize=5, **style)
            top.fill_between(line["budget"], line["accuracy_min"], line["accuracy_max"], color=style["color"],
                             alpha=0.12, linewidth=0, zorder=style["zorder"] - 1)
        top.set_xscale("log", base=2)
        top.set_xticks(spec["budgets"], [str(b) for b in spec["budgets"]])
        _style(top, f"{benchmark}: mean and range over seeds", "thinking budget (tokens)")
        at = part[part["benchmark"] == benchmark]
        for index, seed in enumerate(seeds):
            model = next(m for m in models if training[m]["seed"] == seed)
            points = at[at["model"] == model].set_index("variant")["accuracy"]
            x = [i for i, v in enumerate(order) if v in points.index]
            bottom.plot(x, [points[order[i]] for i in x], linestyle="none", marker=MARKERS[index % len(MARKERS)],
                        color=PALETTE[index % len(PALETTE)], markersize=7, label=f"training seed {seed}")
        bottom.set_xticks(range(len(order)), [names[v] for v in order], rotation=60, ha="right", fontsize="x-small")
        _style(bottom, f"{benchmark}: each seed at budget {budget}", "")
        bottom.legend(fontsize="x-small")
    wait = f", {wait_label(setting)}" if len(wait_settings(spec)) > 1 else ""
    _finish(fig, {b: grid[0][i] for i, b in enumerate(benchmarks)},
            f"{family}: accuracy across training seeds {' '.join(map(str, seeds))}{wait}",
            out_dir / f"training_seeds-{family}")


def training_loss(history: pd.DataFrame, model: str, stem: str | Path) -> None:
    """The demo model's training loss per step (log scale), with a running mean."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    ax.plot(history["step"], history["loss"], color=PALETTE[0], alpha=0.35, linewidth=0.8, label="batch loss")
    smooth = history["loss"].rolling(25, min_periods=1).mean()
    ax.plot(history["step"], smooth, color=PALETTE[0], linewidth=2, label="running mean (25 steps)")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss per predicted token")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    seconds = history["seconds"].iloc[-1]
    ax.set_title(f"{model}: training ({int(history['tokens'].iloc[-1]):,} tokens, {seconds:.0f} s)")
    save_figure(fig, Path(stem))


def forest(claims: pd.DataFrame, model: str, benchmark: str, spec: dict, stem: Path) -> None:
    """One row per comparison (pipeline.reporting.claims), one point per budget in its colour:
    the difference (first minus second) with its raw interval (thick) and the interval at the
    corrected level (thin); filled where the corrected test finds a difference. A panel per Wait
    setting."""
    settings = wait_settings(spec)
    part = claims[(claims["model"] == model) & (claims["benchmark"] == benchmark)]
    order = list(dict.fromkeys(part["comparison"]))
    budgets = spec["budgets"]
    colours = plt.get_cmap("viridis")([i / max(len(budgets) - 1, 1) * 0.85 for i in range(len(budgets))])
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings) + 3, 0.42 * len(order) + 1.6),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        here = part[part["wait_times"] == setting]
        for i, budget in enumerate(budgets):
            rows = here[(here["budget"] == budget) & here["difference"].notna()]
            y = [order.index(c) + (i - (len(budgets) - 1) / 2) * 0.7 / max(len(budgets), 1) for c in rows["comparison"]]
            ax.hlines(y, rows["ci_low_corrected"], rows["ci_high_corrected"], color=colours[i], linewidth=0.8)
            ax.hlines(y, rows["ci_low"], rows["ci_high"], color=colours[i], linewidth=2.6)
            ahead = rows["verdict"].str.endswith(" ahead").to_numpy()
            ax.scatter(rows["difference"], y, s=22, zorder=3, color=[colours[i] if a else "white" for a in ahead],
                       edgecolors=colours[i])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(order)), order, fontsize="small")
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_xlabel("difference in accuracy (first minus second)")
        ax.set_title(wait_label(setting) if len(settings) > 1 else "")
        ax.grid(axis="x", alpha=0.3)
    keys = [Line2D([], [], color=colours[i], marker="o", linestyle="", label=f"budget {b}") for i, b in enumerate(budgets)]
    keys += [Line2D([], [], color="grey", linewidth=2.6, label="raw interval"),
            Line2D([], [], color="grey", linewidth=0.8, label="corrected interval"),
            Line2D([], [], color="grey", marker="o", linestyle="", label="a difference after correction"),
            Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="", label="none after correction")]
    fig.legend(handles=keys, loc="outside right upper", fontsize="small")
    where = "pooled over benchmarks" if benchmark == POOLED else benchmark
    fig.suptitle(f"{model}, {where}: the claims, tested across the grid")
    save_figure(fig, stem)
