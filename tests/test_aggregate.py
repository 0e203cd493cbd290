"""The main table on synthetic grades, checked against statistics computed here independently."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pipeline.core.artifacts import write_table
from pipeline.reporting import tables
from pipeline.reporting.plots import plot_paths
from pipeline.stages import aggregate, plots
from pipeline.stages.aggregate import main_table

VARIANTS = {"dense": {"method": "dense"},
            "wanda-20": {"method": "wanda", "sparsity": 0.2, "allocation": "uniform"},
            "shortgpt-1": {"method": "shortgpt", "layers": 1}}
SPEC = {"models": ["tiny"], "variants": VARIANTS, "benchmarks": ["aime24", "math500"], "budgets": [512, 1024],
        "seeds": [7, 11, 42], "bootstrap": 4000, "confidence": 0.95}
SKILL = {"dense": 0.6, "wanda-20": 0.5, "shortgpt-1": 0.2}


def synthetic(problems: int = 60, samples: int = 1, spec: dict = SPEC, seed: int = 0) -> pd.DataFrame:
    """Grades where each problem has a difficulty and each variant a skill; wrong answers come
    from a small pool so that majority votes can go either way."""
    rng = np.random.default_rng(seed)
    difficulty = {b: rng.uniform(-0.3, 0.3, problems) for b in spec["benchmarks"]}
    rows = []
    for model, variant, benchmark, budget, wait, s in itertools.product(
            spec["models"], spec["variants"], spec["benchmarks"], spec["budgets"], spec.get("wait_times", [0]),
            spec["seeds"]):
        for p in range(problems):
            for sample in range(samples):
                chance = np.clip(SKILL[variant] + difficulty[benchmark][p] + budget / 10_000 + wait / 10, 0, 1)
                correct = bool(rng.random() < chance)
                status = "correct" if correct else rng.choice(["wrong", "wrong", "wrong", "no_answer"])
                extracted = "gold" if correct else (None if status == "no_answer" else f"w{rng.integers(3)}")
                rows.append({"model": model, "variant": variant, "benchmark": benchmark, "problem_id": f"p{p}",
                             "seed": s, "sample": sample, "sample_seed": 0, "budget": budget, "wait_times": wait,
                             "gold": "gold",
                             "extracted": extracted, "rule": "boxed", "status": status, "correct": correct,
                             "thinking_tokens": int(rng.integers(budget // 2, budget + 1)), "answer_tokens": 20,
                             "hit_budget": bool(rng.random() < 0.3)})
    return pd.DataFrame(rows)


def cell(table, variant, benchmark="aime24", budget=512):
    match = table[(table["variant"] == variant) & (table["benchmark"] == benchmark) & (table["budget"] == budget)]
    assert len(match) == 1
    return match.iloc[0]


def test_accuracy_std_counts_and_rates():
    grades = synthetic()
    hedged = grades["status"].eq("wrong") & (grades.index % 2 == 0)  # a multiple-choice hedge is never correct
    grades.loc[hedged, "status"] = "ambiguous"
    table = main_table(grades, SPEC)
    assert len(table) == 1 * 3 * 2 * 2 and set(table["status"]) == {"ok"}
    for variant in VARIANTS:
        part = grades[(grades["variant"] == variant) & (grades["benchmark"] == "aime24") & (grades["budget"] == 512)]
        per_seed = [sum(r.correct for r in part.itertuples() if r.seed == s) / 60 for s in SPEC["seeds"]]
        row = cell(table, variant)
        assert row["accuracy"] == pytest.approx(sum(per_seed) / 3)
        assert row["accuracy_std"] == pytest.approx(statistics.stdev(per_seed))
        assert (row["n_problems"], row["n_seeds"], row["n_samples"]) == (60, 3, 1)
        assert row["budget_hit_rate"] == pytest.approx(sum(part["hit_budget"]) / len(part))
        assert row["mean_thinking_tokens"] == pytest.approx(sum(part["thinking_tokens"]) / len(part))
        assert row["no_answer_rate"] == pytest.approx(sum(part["status"] == "no_answer") / len(part))
        assert row["ambiguous_rate"] == pytest.approx(sum(part["status"] == "ambiguous") / len(part))
        assert row["ambiguous_rate"] > 0
        assert row[["method", "sparsity", "allocation", "layers"]].tolist()[0] == VARIANTS[variant]["method"]
    assert "pass@1" not in table.columns  # one sample: no parallel-scaling metrics


def test_bootstrap_intervals_match_the_normal_approximation():
    problems = 300
    grades = synthetic(problems=problems)
    table = main_table(grades, SPEC)
    part = grades[(grades["benchmark"] == "aime24") & (grades["budget"] == 512)]
    means = {v: part[part["variant"] == v].groupby("problem_id")["correct"].mean() for v in VARIANTS}
    for variant in VARIANTS:
        row = cell(table, variant)
        se = statistics.pstdev(means[variant]) / problems ** 0.5
        assert row["ci_low"] == pytest.approx(row["accuracy"] - 1.96 * se, abs=0.2 * se)
        assert row["ci_high"] == pytest.approx(row["accuracy"] + 1.96 * se, abs=0.2 * se)
        differences = means[variant] - means["dense"]
        assert row["delta_vs_dense"] == pytest.approx(differences.mean())
        if variant == "dense":
            assert row["delta_ci_low"] == row["delta_ci_high"] == 0
        else:
            se = statistics.pstdev(differences) / problems ** 0.5
            assert row["delta_ci_low"] == pytest.approx(differences.mean() - 1.96 * se, abs=0.2 * se)
            assert row["delta_ci_high"] == pytest.approx(differences.mean() + 1.96 * se, abs=0.2 * se)
    again = main_table(grades.sample(frac=1, random_state=1), SPEC)
    pd.testing.assert_frame_equal(table, again)  # intervals do not depend on row order


def brute_force(group: pd.DataFrame, k: int) -> tuple[float, float]:
    """pass@k and maj@k of one (problem, seed) by enumerating every k-subset of its samples."""
    votes = [None if r.status != "wrong" and not r.correct else ("gold" if r.correct else r.extracted)
             for r in group.itertuples()]
    passes, majority = [], []
    for subset in itertools.combinations(votes, k):
        passes.append(any(v == "gold" for v in subset))
        counts = Counter(v for v in subset if v is not None)
        top = max(counts.values(), default=0)
        leaders = [v for v, c in counts.items() if c == top]
        majority.append(1 / len(leaders) if "gold" in leaders else 0.0)
    return float(np.mean(passes)), float(np.mean(majority))


def test_pass_and_majority_at_k_against_enumeration():
    spec = {**SPEC, "budgets": [512], "benchmarks": ["aime24"], "seeds": [7, 11]}
    grades = synthetic(problems=8, samples=6, spec=spec, seed=3)
    table = main_table(grades, spec)
    assert [c for c in table.columns if c.startswith("pass@")] == ["pass@1", "pass@2", "pass@4", "pass@6"]
    for variant in VARIANTS:
        row = cell(table, variant)
        part = grades[grades["variant"] == variant]
        for k in (1, 2, 4, 6):
            expected = np.array([brute_force(g, k) for _, g in part.groupby(["problem_id", "seed"])]).mean(axis=0)
            assert row[f"pass@{k}"] == pytest.approx(expected[0], abs=1e-12)
            assert row[f"maj@{k}"] == pytest.approx(expected[1], abs=1e-12)
        assert row["pass@1"] == pytest.approx(row["accuracy"])


def test_missing_and_partial_cells_are_named(tmp_path, capsys):
    grades = synthetic(problems=10)
    grades = grades[~((grades["variant"] == "wanda-20") & (grades["budget"] == 1024)
                      & (grades["benchmark"] == "math500"))]
    grades = grades[~((grades["variant"] == "shortgpt-1") & (grades["seed"] == 11) & (grades["budget"] == 512))]
    paths = []
    for (variant, benchmark), part in grades.groupby(["variant", "benchmark"]):
        paths.append(tmp_path / f"{variant}-{benchmark}.parquet")
        write_table(part, paths[-1])
    out = tmp_path / "tables" / "main.csv"
    args = ["--grades", *map(str, paths), "--spec", json.dumps(SPEC), "--out", str(out)]
    assert aggregate.main(args) == 0
    table = pd.read_csv(out)
    assert len(table) == 12
    missing = cell(table, "wanda-20", "math500", 1024)
    assert missing["status"] == "missing" and np.isnan(missing["accuracy"])
    partial = cell(table, "shortgpt-1", "aime24", 512)
    assert partial["status"] == "partial" and partial["missing"] == "seeds [11]" and partial["n_seeds"] == 2
    err = capsys.readouterr().err
    assert "missing: tiny / wanda-20 / math500 / budget 1024" in err and "partial: tiny / shortgpt-1 / aime24" in err
    assert aggregate.main(args + ["--strict"]) == 1
    # pivots in the paper's shape: variants as rows, benchmarks as columns
    csv_path, md_path = tables.pivot_paths(out.parent, "tiny", 1024)
    wide = pd.read_csv(csv_path, index_col="variant")
    assert list(wide.index) == list(VARIANTS) and list(wide.columns) == ["description", "aime24", "math500", "mean"]
    assert np.isnan(wide.loc["wanda-20", "math500"]) and np.isnan(wide.loc["wanda-20", "mean"])
    assert wide.loc["dense", "aime24"] == pytest.approx(cell(table, "dense", "aime24", 1024)["accuracy"])
    markdown = md_path.read_text()
    assert "| wanda 20% | " in markdown and "missing" in markdown and "| shortgpt, 1 block removed |" in markdown


def test_wait_settings_are_cells_side_by_side_with_their_own_pivots_and_lines(tmp_path):
    spec = {**SPEC, "models": ["s1.1-7B"], "wait_times": [0, 1]}  # a dotted name: the file names keep it whole
    grades = synthetic(problems=20, spec=spec).assign(model="s1.1-7B")
    # Wait x1 loses the dense cell of math500 at 1024: named as missing, never dropped
    grades = grades[~((grades["variant"] == "dense") & (grades["benchmark"] == "math500") & (grades["budget"] == 1024)
                      & (grades["wait_times"] == 1))]
    paths = [tmp_path / "grades.parquet"]
    write_table(grades, paths[0])
    out = tmp_path / "tables" / "main.csv"
    assert aggregate.main(["--grades", str(paths[0]), "--spec", json.dumps(spec), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 3 * 2 * 2 * 2 and list(table.columns[:5]) == aggregate.CELL
    for (variant, benchmark, budget), both in table.groupby(["variant", "benchmark", "budget"]):
        assert both["wait_times"].tolist() == [0, 1]  # side by side, in order
        for setting in (0, 1):
            part = grades[(grades["variant"] == variant) & (grades["benchmark"] == benchmark)
                          & (grades["budget"] == budget) & (grades["wait_times"] == setting)]
            row = both[both["wait_times"] == setting].iloc[0]
            if part.empty:
                assert row["status"] == "missing"
                continue
            assert row["accuracy"] == pytest.approx(part.groupby("seed")["correct"].mean().mean())
            dense = grades[(grades["variant"] == "dense") & (grades["benchmark"] == benchmark)
                           & (grades["budget"] == budget) & (grades["wait_times"] == setting)]
            if dense.empty:  # compared with dense only at the same budget and setting
                assert np.isnan(row["delta_vs_dense"])
            else:
                expected = (part.groupby("problem_id")["correct"].mean()
                            - dense.groupby("problem_id")["correct"].mean()).mean()
                assert row["delta_vs_dense"] == pytest.approx(expected)
    # a pivot per model, budget and setting; none under the single-setting names
    for budget in spec["budgets"]:
        assert not tables.pivot_paths(out.parent, "s1.1-7B", budget)[0].exists()
        for setting in (0, 1):
            csv_path, md_path = tables.pivot_paths(out.parent, "s1.1-7B", budget, setting)
            assert csv_path.name == f"pivot-s1.1-7B-{budget}-wait{setting}.csv"
            wide = pd.read_csv(csv_path, index_col="variant")
            expected = table[(table["budget"] == budget) & (table["wait_times"] == setting)
                             & (table["variant"] == "wanda-20") & (table["benchmark"] == "aime24")]["accuracy"]
            assert wide.loc["wanda-20", "aime24"] == pytest.approx(expected.iloc[0])
            assert f"thinking budget {budget}, Wait x{setting}" in md_path.read_text()
    assert sorted(p.name for p in out.parent.glob("pivot-*")) == sorted(
        p.name for key in tables.pivot_keys(spec) for p in tables.pivot_paths(out.parent, *key))
    # one line per variant and setting: the variant's colour and marker, a line style per setting
    claims_csv = out.parent / "claims-s1.1-7B.csv"  # pipeline.reporting.claims, tests/test_claims.py
    plots.main(["--table", str(out), "--claims", str(claims_csv), "--spec", json.dumps(spec),
                "--out-dir", str(tmp_path / "plots")])
    for path in plot_paths(tmp_path / "plots", "s1.1-7B") + tables.forest_paths(tmp_path / "plots", "s1.1-7B",
                                                                                 spec["benchmarks"]):
        assert path.stat().st_size > 1000
    # the forest plot: a row per comparison, a point per budget, a panel per Wait setting
    forest = (tmp_path / "plots" / "forest-s1.1-7B--pooled.svg").read_text()
    assert "shortgpt, 1 block removed against dense" in forest and "budget 1024" in forest and "Wait x1" in forest
    svg = (tmp_path / "plots" / "accuracy_vs_budget-s1.1-7B.svg").read_text()
    # the legend names each variant once and each setting's line style once
    assert svg.count("<!-- dense -->") == 1 and svg.count("<!-- wanda 20% -->") == 1
    assert svg.count("<!-- Wait x0 -->") == 1 and svg.count("<!-- Wait x1 -->") == 1
    assert "stroke-dasharray" in svg


def test_one_wait_setting_keeps_the_names_without_settings():
    spec = {**SPEC, "wait_times": [1]}
    assert tables.pivot_keys(spec) == [("tiny", 512, None), ("tiny", 1024, None)]
    assert tables.pivot_paths("t", "tiny", 512)[1].name == "pivot-tiny-512.md"
    table = main_table(synthetic(problems=5, spec=spec), spec)
    assert set(table["wait_times"]) == {1} and len(table) == 3 * 2 * 2


def test_perplexity_joins_by_model_and_variant(tmp_path):
    paths = []
    for variant, value in (("dense", 12.5), ("wanda-20", 14.0)):
        path = tmp_path / "perplexity" / "tiny" / f"{variant}.parquet"
        write_table(pd.DataFrame({"perplexity": [value]}), path)
        paths.append(str(path))
    table = main_table(synthetic(problems=5), SPEC, aggregate.read_perplexity(paths))
    assert cell(table, "wanda-20")["perplexity"] == 14.0 and np.isnan(cell(table, "shortgpt-1")["perplexity"])


def test_plots_are_written(tmp_path):
    table_path = tmp_path / "main.csv"
    main_table(synthetic(problems=10), SPEC).to_csv(table_path, index=False)
    args = ["--table", str(table_path), "--spec", json.dumps(SPEC), "--out-dir", str(tmp_path / "plots")]
    assert plots.main(args) == 0
    for path in plot_paths(tmp_path / "plots", "tiny"):
        assert path.stat().st_size > 1000


def test_variant_labels_are_unique_and_name_nm_patterns():
    from pipeline.reporting import tables

    rows = pd.DataFrame([
        {"variant": "dense", "method": "dense", "sparsity": None, "nm": None, "allocation": None, "layers": None},
        {"variant": "wanda-2of4", "method": "wanda", "sparsity": None, "nm": "2:4", "allocation": "uniform", "layers": None},
        {"variant": "wanda-50", "method": "wanda", "sparsity": 0.5, "nm": None, "allocation": "uniform", "layers": None},
        {"variant": "wanda-50-c4", "method": "wanda", "sparsity": 0.5, "nm": None, "allocation": "uniform", "layers": None},
        {"variant": "shortgpt-2", "method": "shortgpt", "sparsity": None, "nm": None, "allocation": None, "layers": 2},
    ])
    spec = {"variants": {v: {"method": m} for v, m in zip(rows["variant"], rows["method"])}}
    names = tables.labels(rows, spec)
    assert names["dense"] == "dense" and names["wanda-2of4"] == "wanda 2:4"
    assert names["shortgpt-2"] == "shortgpt, 2 blocks removed"
    assert names["wanda-50"] == "wanda 50% [wanda-50]" and names["wanda-50-c4"] == "wanda 50% [wanda-50-c4]"
    assert len(set(names.values())) == len(names)


def test_every_line_has_its_own_colour_and_marker():
    from pipeline.reporting.plots import line_styles

    names = [f"v{i}" for i in range(40)]
    styles = line_styles(["dense", *names], {"dense"})
    looks = [(style["color"], style["marker"]) for style in styles.values()]
    assert len(set(looks)) == len(looks) == 41
    assert styles["dense"]["color"] == "black" and styles["dense"]["zorder"] > styles["v0"]["zorder"]
    assert len({styles[n]["color"] for n in names[:20]}) == 20  # the first twenty differ in colour alone
