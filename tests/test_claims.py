"""The claims tables' statistics on constructed grids: the error rates the correction promises,
a planted difference found, the minimum detectable difference, the pairing by problem."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline.core.artifacts import write_table
from pipeline.reporting import claims, power
from pipeline.stages import aggregate

VARIANTS = {"dense": {"method": "dense"},
            "wanda-25": {"method": "wanda", "sparsity": 0.25, "allocation": "uniform", "calibration": "c4"},
            "wanda-50": {"method": "wanda", "sparsity": 0.5, "allocation": "uniform", "calibration": "c4"},
            "wanda-50-owl": {"method": "wanda", "sparsity": 0.5, "allocation": "owl", "calibration": "c4"},
            "wanda-50-other": {"method": "wanda", "sparsity": 0.5, "allocation": "owl", "calibration": "wiki"},
            "shortgpt-1": {"method": "shortgpt", "layers": 1, "calibration": "c4"}}
SPEC = {"models": ["tiny"], "variants": VARIANTS, "benchmarks": ["aime24", "math500"], "budgets": [512, 1024],
        "wait_times": [0], "seeds": [7, 11], "depths": {"tiny": 4}, "confidence": 0.95}


def grades(skill: dict, problems: int = 40, seeds=(7, 11), samples: int = 2, spec: dict = SPEC,
           seed: int = 0) -> pd.DataFrame:
    """Grades where problems differ much in difficulty (shared by every variant: the pairing
    matters) and each variant has a skill."""
    rng = np.random.default_rng(seed)
    difficulty = {b: rng.uniform(-0.45, 0.45, problems) for b in spec["benchmarks"]}
    frames = []
    for variant, benchmark, budget, s in itertools.product(spec["variants"], spec["benchmarks"], spec["budgets"], seeds):
        chance = np.clip(skill[variant] + difficulty[benchmark], 0, 1)
        correct = rng.random((samples, problems)) < chance
        frames.append(pd.DataFrame({
            "model": "tiny", "variant": variant, "benchmark": benchmark, "budget": budget, "wait_times": 0, "seed": s,
            "problem_id": np.tile([f"p{p}" for p in range(problems)], samples), "sample": np.repeat(range(samples), problems),
            "correct": correct.ravel()}))
    return pd.concat(frames, ignore_index=True)


SKILL = {"dense": 0.5, "wanda-25": 0.5, "wanda-50": 0.45, "wanda-50-owl": 0.5, "wanda-50-other": 0.45, "shortgpt-1": 0.2}


def test_comparisons_are_found_from_the_variants():
    found = {(c.kind, c.first, c.second) for c in claims.comparisons(SPEC, blocks=4)}
    pruned = [v for v in VARIANTS if v != "dense"]
    assert {(k, a) for k, a, b in found if k == "vs dense" and b == "dense"} == {("vs dense", v) for v in pruned}
    # OWL against uniform at the same method, sparsity and calibration only
    assert {(a, b) for k, a, b in found if k == "allocation"} == {("wanda-50-owl", "wanda-50")}
    # one of four blocks removed against unstructured pruning of a quarter
    assert {(a, b) for k, a, b in found if k == "unstructured vs structured"} == {("wanda-25", "shortgpt-1")}
    assert len(found) == len(pruned) + 2
    named = claims.comparisons({**SPEC, "claims": {"pairs": [["wanda-50-other", "wanda-50-owl"], ["wanda-25", "shortgpt-1"]]}}, 4)
    assert [(c.kind, c.first, c.second) for c in named if c.kind == "named"] == [("named", "wanda-50-other", "wanda-50-owl")]


def test_config_names_the_pairs_and_the_correction():
    base = cfg.load_yaml("config/demo.yaml")
    with pytest.raises(cfg.ConfigError, match=r"tables.claims.pairs\[0\]: 'wanda-5' is not a variant \(did you mean"):
        cfg.prepare({**base, "tables": {"claims": {"pairs": [["wanda-5", "dense"]]}}})
    with pytest.raises(cfg.ConfigError, match="tables.correction"):
        cfg.prepare({**base, "tables": {"correction": "bonferroni"}})
    spec = slices.table_slice(cfg.prepare({**base, "tables": {"correction": "holm"}}))
    assert spec["correction"] == "holm" and spec["claims"] == {"power": 0.8, "pooling": "problems", "pairs": []}


def _grid(rng, comparisons: int, planted: int, effect: float, problems: int = 50, draws: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """A grid of paired comparisons on problems of spread-out difficulty; the first `planted`
    have a true difference `effect`, the rest none."""
    rows = []
    truth = np.arange(comparisons) < planted
    for i in range(comparisons):
        p = rng.uniform(0.1, 0.9, problems)
        a = rng.binomial(draws, np.clip(p + effect * truth[i], 0, 1)) / draws
        b = rng.binomial(draws, p) / draws
        m = np.full(problems, float(draws))
        rows.append({"first_role": "first", "second_role": "second",
                     **claims.paired_test([claims.from_scores(a, b, m, m)], "problems", 0.05, 0.8)})
    return pd.DataFrame(rows), truth


def test_a_null_grid_keeps_its_error_rate():
    """500 comparisons, 450 without a difference: before correction about 5% of the null ones
    look significant; after it, the share of false discoveries among the discoveries (BH) or
    the chance of any false one (Holm) stays at or below 5% on average over draws."""
    rng = np.random.default_rng(2026)
    false_share, any_false, raw, found_bh, found_holm = [], [], [], [], []
    for _ in range(10):
        frame, truth = _grid(rng, 500, 50, 0.25)
        raw.append((frame["p_value"].to_numpy()[~truth] < 0.05).mean())
        bh = claims.correct(frame.copy(), {"alpha": 0.05, "correction": "bh"})["verdict"].str.endswith(" ahead").to_numpy()
        holm = claims.correct(frame.copy(), {"alpha": 0.05, "correction": "holm"})["verdict"].str.endswith(" ahead").to_numpy()
        false_share.append((bh & ~truth).sum() / max(bh.sum(), 1))
        any_false.append((holm & ~truth).any())
        found_bh.append(bh[truth].mean())
        found_holm.append(holm[truth].mean())
        assert not (holm & ~bh).any()  # Holm finds a subset of what BH finds
    assert 0.035 < np.mean(raw) < 0.065
    assert np.mean(false_share) <= 0.05
    assert np.mean(any_false) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 10)
    assert np.mean(found_bh) > 0.8 and np.mean(found_holm) > 0.5  # the planted differences are found


def test_paired_test_is_the_paired_t_test_and_its_interval():
    rng = np.random.default_rng(1)
    a, b = rng.binomial(4, 0.6, 30) / 4, rng.binomial(4, 0.5, 30) / 4
    m = np.full(30, 4.0)
    out = claims.paired_test([claims.from_scores(a, b, m, m)], "problems", 0.05, 0.8)
    reference = stats.ttest_rel(a, b)
    assert out["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
    low, high = reference.confidence_interval(0.95)
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_a_planted_difference_is_found_and_equal_variants_are_not_told_apart(tmp_path):
    data = grades(SKILL, problems=60)
    table = aggregate.main_table(data.assign(thinking_tokens=1, answer_tokens=1, hit_budget=False, status="wrong",
                                             extracted=None), SPEC)
    frame = claims.claims(data, table, SPEC, "tiny")
    by = frame.set_index(["first", "second", "benchmark", "budget"])
    for benchmark in ["aime24", "math500", claims.POOLED]:
        assert by.loc[("shortgpt-1", "dense", benchmark, 512), "verdict"] == "dense ahead"
        assert by.loc[("wanda-25", "shortgpt-1", benchmark, 1024), "verdict"] == "unstructured ahead"
        assert not by.loc[("wanda-25", "dense", benchmark, 512), "verdict"].endswith("ahead")
    # against dense the difference is the main table's delta, paired the same way
    row = table[(table["variant"] == "shortgpt-1") & (table["benchmark"] == "aime24") & (table["budget"] == 512)].iloc[0]
    assert by.loc[("shortgpt-1", "dense", "aime24", 512), "difference"] == pytest.approx(row["delta_vs_dense"])
    # the corrected interval is wider than the raw one and p-values only grow
    tested = frame[frame["p_value"].notna() & (frame["ci_high"] > frame["ci_low"])]
    assert (tested["ci_high_corrected"] - tested["ci_low_corrected"] > tested["ci_high"] - tested["ci_low"]).all()
    assert (tested["p_corrected"] >= tested["p_value"]).all()
    # one block of eight is no unstructured variant's share: the table says so
    deeper = claims.claims(data, table, {**SPEC, "depths": {"tiny": 8}}, "tiny")
    assert deeper.attrs["unmatched"] == ["shortgpt, 1 block removed (1 of 8 blocks)"]
    assert "unstructured vs structured" not in set(deeper["kind"])
    assert "shortgpt, 1 block removed (1 of 8 blocks) removes" in claims.markdown(deeper, "tiny", SPEC)
    # pooled over problems: every problem weighs the same, the difference is their mean
    pooled = by.loc[("shortgpt-1", "dense", claims.POOLED, 512), "difference"]
    assert pooled == pytest.approx(np.mean([by.loc[("shortgpt-1", "dense", b, 512), "difference"] for b in SPEC["benchmarks"]]))


def test_the_pairing_is_by_problem():
    """Problems differ much more among themselves than the variants do: paired, the interval is
    narrow; shuffling which problem pairs with which (the same scores) widens it."""
    data = grades({**SKILL, "wanda-50": 0.45}, problems=60)
    first = data[(data["variant"] == "wanda-50") & (data["benchmark"] == "aime24") & (data["budget"] == 512)]
    second = data[(data["variant"] == "dense") & (data["benchmark"] == "aime24") & (data["budget"] == 512)]
    paired = claims.paired_test([claims.part(first, second)], "problems", 0.05, 0.8)
    ids = first["problem_id"].unique()
    shuffled = dict(zip(ids, np.random.default_rng(3).permutation(ids)))
    unpaired = claims.paired_test([claims.part(first.assign(problem_id=first["problem_id"].map(shuffled)), second)],
                                  "problems", 0.05, 0.8)
    assert unpaired["difference"] == pytest.approx(paired["difference"])
    assert unpaired["ci_high"] - unpaired["ci_low"] > 1.5 * (paired["ci_high"] - paired["ci_low"])
    assert unpaired["mdd"] > 1.5 * paired["mdd"]
    # a problem's seeds and samples are its draws: relabelling seeds within the problem changes nothing
    relabelled = claims.paired_test([claims.part(first.assign(seed=first["seed"].map({7: 11, 11: 7})), second)],
                                    "problems", 0.05, 0.8)
    assert relabelled["ci_low"] == pytest.approx(paired["ci_low"])


def test_the_minimum_detectable_difference_shrinks_with_problems_and_seeds():
    args = dict(between=0.02, within=0.4, alpha=0.05, power=0.8)
    assert power.detectable(120, 8, **args) < power.detectable(30, 8, **args)
    assert power.detectable(30, 16, **args) < power.detectable(30, 8, **args)
    # large samples: (z(0.975) + z(0.8)) standard errors
    assert power.multiplier(100_000, 0.05, 0.8) == pytest.approx(stats.norm.ppf(0.975) + stats.norm.ppf(0.8), rel=1e-3)
    # estimated from data: more problems and more seeds each shrink it
    def mdd(problems, seeds):
        data = grades(SKILL, problems=problems, seeds=range(seeds), samples=1)
        cell = {v: data[(data["variant"] == v) & (data["benchmark"] == "aime24") & (data["budget"] == 512)]
                for v in ("wanda-50", "dense")}
        return claims.paired_test([claims.part(cell["wanda-50"], cell["dense"])], "problems", 0.05, 0.8)["mdd"]
    assert mdd(120, 2) < mdd(30, 2)
    assert mdd(60, 8) < mdd(60, 1)
    # the seeds needed: the fewest at which the difference is detectable
    seeds = power.seeds_needed(0.1, 30, 4, **args)
    assert power.detectable(30, 4 * seeds, **args) <= 0.1 < power.detectable(30, 4 * (seeds - 1), **args)
    assert power.seeds_needed(0.05, 30, 4, **args) is None  # the problems differ too much: more seeds cannot help


def test_the_stage_writes_the_claims(tmp_path):
    spec = {**SPEC, "wait_times": [0, 1], "models": ["s1.1-7B"], "depths": {"s1.1-7B": 4}}
    data = pd.concat([grades(SKILL, problems=20, spec=spec).assign(wait_times=w) for w in (0, 1)])
    data = data.assign(model="s1.1-7B", thinking_tokens=10, answer_tokens=2, hit_budget=False, status="wrong",
                       extracted=None, sample_seed=0)
    write_table(data, tmp_path / "grades.parquet")
    out = tmp_path / "tables" / "main.csv"
    assert aggregate.main(["--grades", str(tmp_path / "grades.parquet"), "--spec", json.dumps(spec), "--out", str(out)]) == 0
    csv_path, md_path = claims.paths(out.parent, "s1.1-7B")
    frame = pd.read_csv(csv_path)
    assert list(frame.columns) == claims.COLUMNS
    assert len(frame) == 7 * 2 * 2 * 3  # comparisons x budgets x Wait settings x (2 benchmarks + pooled)
    text = md_path.read_text()
    assert f"{len(frame)} tests corrected together (Benjamini-Hochberg" in text and "Wait x1" in text
    assert "| shortgpt, 1 block removed against dense | dense ahead" in text
    # the plots stage draws them: tests/test_aggregate.py (one run of the plots for both)


def test_the_cost_command_says_the_seeds_a_benchmark_needs(tmp_path, capsys):
    from pipeline import cost

    config = cost.load_config(["config/demo.yaml"])
    rows = {r["benchmark"]: r for r in cost.detection(config, 0.1)}
    assert set(rows) == set(config["benchmarks"])
    r = rows["chain_math"]
    seeds, draws = r["seeds_needed"], config["generation"]["samples"]
    assert power.detectable(100, draws * seeds, 0.0, 0.5, 0.05, 0.8) <= 0.1 < power.detectable(100, draws * (seeds - 1), 0.0, 0.5, 0.05, 0.8)
    # the variance a claims table observed: a spread of the difference over problems that no seed removes
    observed = pd.DataFrame({"benchmark": ["chain_math", "chain_choice"], "sd_between": [0.5, 0.05], "sd_within": [0.7, 0.7]})
    observed.to_csv(tmp_path / "claims.csv", index=False)
    rows = {r["benchmark"]: r for r in cost.detection(config, 0.1, str(tmp_path / "claims.csv"))}
    assert rows["chain_math"]["seeds_needed"] is None and rows["chain_choice"]["seeds_needed"] >= 1
    assert "none suffices: more problems needed" in cost.render_detection(list(rows.values()), 0.1)
    with pytest.raises(SystemExit):
        cost.main(["--configfile", "config/demo.yaml", "--detect", "2"])
    assert "--detect 2.0: a difference in accuracy lies between 0 and 1" in capsys.readouterr().err
