"""Pivots of the main table in the shape of paper A's tables: one table per model and budget,
variants as rows, benchmarks as columns.

    results/tables/pivot-{model}-{budget}.csv   accuracy (empty where the cell is missing)
    results/tables/pivot-{model}-{budget}.md    accuracy ± std over seeds, delta vs dense
    results/tables/training_seeds.csv|md        trained demo models: mean, min, max across training seeds
    results/tables/training_seed_orderings.csv  per pair of variants at the largest budget: whether
                                                their order holds for every training seed or flips

With several Wait settings (generation.wait.times: [0, 1, ...]) there is one pair per model,
budget and setting, named pivot-{model}-{budget}-wait{setting}.csv|md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import slices
from pipeline.core.artifacts import atomic_path


def variant_order(spec: dict) -> list[str]:
    """The spec's variants with the dense baseline(s) first, as in the paper's tables."""
    return sorted(spec["variants"], key=lambda name: spec["variants"][name]["method"] != "dense")


def wait_settings(spec: dict) -> list[int]:
    """The table spec's Wait settings (generation.wait.times); [0] for a spec without them."""
    return slices.wait_settings(spec.get("wait_times", 0))


def wait_label(setting: int) -> str:
    return f"Wait x{setting}"


def pivot_keys(spec: dict) -> list[tuple[str, int, int | None]]:
    """(model, budget, Wait setting) of every pivot. The setting is None when the spec has one:
    its pivots keep the names and titles they have without Wait settings."""
    settings = wait_settings(spec)
    return [(model, budget, setting if len(settings) > 1 else None)
            for model in spec["models"] for budget in spec["budgets"] for setting in settings]


def pivot_paths(out_dir: str | Path, model: str, budget: int, setting: int | None = None) -> tuple[Path, Path]:
    stem = f"pivot-{model}-{budget}" + (f"-wait{setting}" if setting is not None else "")
    # not with_suffix: a model name may hold a dot (s1.1-7B)
    return Path(out_dir) / f"{stem}.csv", Path(out_dir) / f"{stem}.md"


def _part(table: pd.DataFrame, model: str, budget: int, setting: int | None) -> pd.DataFrame:
    """The rows of one pivot; with `setting` None, every row (a single setting)."""
    part = table[(table["model"] == model) & (table["budget"] == budget)]
    return part if setting is None else part[part["wait_times"] == setting]


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


def pivot(table: pd.DataFrame, model: str, budget: int, spec: dict, setting: int | None = None) -> pd.DataFrame:
    """Accuracy of every variant (rows, spec order) on every benchmark (columns, spec order),
    with the mean over benchmarks when every benchmark has a value."""
    part = _part(table, model, budget, setting)
    wide = part.pivot(index="variant", columns="benchmark", values="accuracy")
    wide = wide.reindex(index=variant_order(spec), columns=spec["benchmarks"])
    if len(spec["benchmarks"]) > 1:
        wide["mean"] = wide.mean(axis=1, skipna=False)
    names = labels(part, spec)
    wide.insert(0, "description", [names.get(v) for v in wide.index])
    wide.index.name = "variant"
    wide.columns.name = None
    return wide


def _markdown(table: pd.DataFrame, model: str, budget: int, spec: dict, setting: int | None = None) -> str:
    part = _part(table, model, budget, setting)
    names = labels(part, spec)
    part = part.set_index(["variant", "benchmark"])
    benchmarks = spec["benchmarks"]
    title = f"### {model}, thinking budget {budget}" + (f", {wait_label(setting)}" if setting is not None else "")
    lines = [title, "",
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
    for model, budget, setting in pivot_keys(spec):
        csv_path, md_path = pivot_paths(out_dir, model, budget, setting)
        with atomic_path(csv_path) as tmp:
            pivot(table, model, budget, spec, setting).replace({np.nan: None}).to_csv(tmp)
        with atomic_path(md_path) as tmp:
            tmp.write_text(_markdown(table, model, budget, spec, setting))
        written += [csv_path, md_path]
    return written


def write_model_tables(spec: dict, out_dir: str | Path, paths, frame_of, markdown_of,
                       columns: list[str] | None = None) -> list[Path]:
    """For each model of `spec`, `frame_of(model)` as CSV (its `columns`, else all) and
    `markdown_of(frame, model)` as Markdown, at `paths(out_dir, model)`, each written atomically."""
    written = []
    for model in spec["models"]:
        frame = frame_of(model)
        csv_path, md_path = paths(out_dir, model)
        with atomic_path(csv_path) as tmp:
            (frame if columns is None else frame[columns]).to_csv(tmp, index=False)
        with atomic_path(md_path) as tmp:
            Path(tmp).write_text(markdown_of(frame, model))
        written += [csv_path, md_path]
    return written


SEED_SPREAD = ("training_seeds.csv", "training_seeds.md", "training_seed_orderings.csv")
_SPREAD_OF = ["accuracy", "pass@4", "perplexity"]


def seed_families(training: dict) -> dict[str, list[str]]:
    """Families (slices.training_seeds) of two or more training seeds -> their models."""
    families: dict[str, list[str]] = {}
    for model, member in training.items():
        families.setdefault(member["family"], []).append(model)
    return {family: models for family, models in families.items() if len(models) > 1}


def seed_spread(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Per cell of a family of trained demo models that differ only in their training seed
    (slices.training_seeds): mean, min and max across the seeds, so that a reader sees which
    figures hold for every seed and which are one training run's."""
    training = spec.get("training", {})
    part = table[table["model"].isin(training) & (table["status"] != "missing")]
    keys = ["family", "variant", "benchmark", "budget", "wait_times"]
    columns = [c for c in _SPREAD_OF if c in part.columns]
    if part.empty:
        return pd.DataFrame(columns=keys + ["training_seeds"] + [f"{c}_{s}" for c in columns for s in ("mean", "min", "max")])
    part = part.assign(family=part["model"].map(lambda m: training[m]["family"]),
                       training_seed=part["model"].map(lambda m: training[m]["seed"]))
    grouped = part.groupby(keys, sort=False)
    out = grouped[columns].agg(["mean", "min", "max"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out.insert(0, "training_seeds", grouped["training_seed"].agg(lambda s: " ".join(str(v) for v in sorted(s))))
    return out.reset_index()


def seed_orderings(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Per family, benchmark and pair of variants, at the largest budget and the smallest Wait
    setting: each training seed's accuracy difference (first minus second) and whether the order
    holds for every seed ("<first> ahead", "<second> ahead") or flips between seeds ("flips"; a
    zero difference for some seed counts as a flip: no order there)."""
    columns = ["family", "benchmark", "budget", "wait_times", "first", "second", "differences", "order"]
    training = spec.get("training", {})
    families = seed_families(training)
    budget, setting = max(spec["budgets"]), wait_settings(spec)[0]
    at = table[table["model"].isin(training) & (table["status"] != "missing") & (table["budget"] == budget)
               & (table["wait_times"] == setting)]
    rows = []
    for family, models in families.items():
        models = sorted(models, key=lambda m: training[m]["seed"])
        for benchmark in spec["benchmarks"]:
            accuracy = (at[at["benchmark"] == benchmark].pivot_table(index="variant", columns="model",
                                                                     values="accuracy").reindex(columns=models))
            order = [v for v in variant_order(spec) if v in accuracy.index and accuracy.loc[v].notna().all()]
            for i, first in enumerate(order):
                for second in order[i + 1:]:
                    diff = (accuracy.loc[first] - accuracy.loc[second]).round(6)
                    verdict = (f"{first} ahead" if (diff > 0).all() else f"{second} ahead" if (diff < 0).all()
                               else "flips")
                    rows.append([family, benchmark, budget, setting, first, second,
                                 " ".join(f"{d:+.3f}" for d in diff), verdict])
    return pd.DataFrame(rows, columns=columns)


def write_seed_spread(table: pd.DataFrame, spec: dict, out_dir: str | Path) -> list[Path]:
    """tables/training_seeds.csv and .md, and training_seed_orderings.csv: the spread across
    training seeds and the orderings that hold or flip (empty without such a family)."""
    spread = seed_spread(table, spec)
    orderings = seed_orderings(table, spec)
    csv_path, md_path, orderings_path = (Path(out_dir) / name for name in SEED_SPREAD)
    with atomic_path(csv_path) as tmp:
        spread.to_csv(tmp, index=False)
    with atomic_path(orderings_path) as tmp:
        orderings.to_csv(tmp, index=False)
    lines = ["### accuracy across training seeds: mean [min, max]", "",
             "| family | variant | benchmark | budget | Wait | seeds | accuracy |", "|---|---|---|---|---|---|---|"]
    for row in spread.itertuples(index=False):
        lines.append(f"| {row.family} | {row.variant} | {row.benchmark} | {row.budget} | {row.wait_times} | "
                     f"{row.training_seeds} | {row.accuracy_mean:.3f} [{row.accuracy_min:.3f}, {row.accuracy_max:.3f}] |")
    for (family, benchmark), part in orderings.groupby(["family", "benchmark"], sort=False):
        flips = part[part["order"] == "flips"]
        lines += ["", f"### {family}, {benchmark}, budget {part['budget'].iloc[0]}: orderings that flip between "
                  f"training seeds ({len(flips)} of {len(part)} pairs; the other pairs keep their order for "
                  "every seed)", "", "| first | second | first minus second, per seed |", "|---|---|---|"]
        lines += [f"| {row.first} | {row.second} | {row.differences} |" for row in flips.itertuples(index=False)]
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path, orderings_path]


def problem_scores(cell: pd.DataFrame) -> pd.Series:
    """A cell's score per problem: its mean over seeds and samples (the unit every interval resamples)."""
    return cell.groupby("problem_id")["correct"].mean()


def paired(first: pd.Series, second: pd.Series) -> pd.DataFrame:
    """Two per-problem series side by side over the problems both have: the pairing of every
    paired interval (the main table's delta to dense, equal compute, the claims)."""
    return pd.concat([first, second], axis=1, join="inner")


FORMATS = ("png", "svg")  # every figure's


def forest_paths(out_dir: str | Path, model: str, benchmarks: list[str]) -> list[Path]:
    """forest-{model}-{benchmark}.{png,svg}, and forest-{model}--pooled for the pooled verdicts
    of several benchmarks (no benchmark name starts with '-')."""
    stems = [f"forest-{model}-{b}" for b in benchmarks] + ([f"forest-{model}--pooled"] if len(benchmarks) > 1 else [])
    return [Path(out_dir) / f"{stem}.{fmt}" for stem in stems for fmt in FORMATS]


def cell_rng(*key) -> np.random.Generator:
    """A bootstrap generator seeded by its cell's key, so a cell's interval does not depend on
    table order (the main table's and the equal-compute table's intervals)."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))
