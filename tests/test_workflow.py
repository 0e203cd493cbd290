"""The workflow end to end: the demo through real vLLM, lint, and exact partial reruns."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.reporting import tables
from pipeline.reporting.reproduction import tolerance
from tests.workflow_util import ROOT, copy_workflow, scheduled_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/demo.yaml"])
def test_lint_is_clean(tmp_path, configfile):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--lint", "--configfile", configfile, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_snakefmt_formatted():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_study_config_dry_run_schedules_the_whole_grid(tmp_path):
    workdir = copy_workflow(tmp_path)
    # no Hub and no GPU here: the preflight would refuse the grid, so list it without
    jobs = scheduled_jobs(snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--config", "preflight=False").stdout)
    print("study grid dry run:", jobs, "total", sum(jobs.values()))
    models, variants, benchmarks = 2, 27, 4  # dense, ShortGPT 1-2, 3 methods x 2 sparsities x 4 allocations
    assert jobs["generate"] == models * variants * benchmarks
    assert jobs["grade"] == models * variants * benchmarks
    assert jobs["masks"] == models * (variants - 1) == jobs["export"]
    assert jobs["perplexity"] == models * variants
    assert jobs["base_model"] == models and jobs["benchmark_data"] == benchmarks
    # statistics shared by variants are computed once per model: OWL activations and LayerIF
    # influence (c4), ShortGPT block influence (pg19), AlphaPruning spectra
    assert jobs["stats_activations"] == models * 3 and jobs["stats_weights"] == models
    # AlphaPruning's allocation is checked by its own job before the masks: 3 methods x 2 sparsities
    assert jobs["allocation"] == models * 3 * 2


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The README's demo, run once: every stage for real, generation through vLLM on the CPU."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    start = time.perf_counter()
    # the time limit guards against a hang, well above the demo's minutes on 2 cores
    result = snakemake(workdir, "--cores", "2", "--configfile", "config/demo.yaml", timeout=2700)
    print(result.stdout[-2000:], result.stderr[-3000:])
    print(f"demo run: {time.perf_counter() - start:.0f} s")
    return workdir


def test_demo_writes_pivots_and_plots(demo_run):
    for budget in DEMO["generation"]["budgets"]:
        for setting in DEMO["generation"]["wait"]["times"]:  # one pivot per Wait setting
            pivot = pd.read_csv(demo_run / "results" / "tables" / f"pivot-chain-qwen3-{budget}-wait{setting}.csv")
            assert len(pivot) >= len(DEMO["variants"])
    for kind in ("accuracy_vs_budget", "accuracy_vs_sparsity"):
        png = demo_run / "results" / "plots" / f"{kind}-chain-qwen3.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for png in tables.forest_paths(demo_run / "results" / "plots", "chain-qwen3", list(DEMO["benchmarks"]))[::2]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_table_has_every_cell(demo_run):
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv")
    generation = DEMO["generation"]
    expected = {(v, b, budget, w) for v in DEMO["variants"] for b in DEMO["benchmarks"] for budget in generation["budgets"]
                for w in generation["wait"]["times"]}
    assert len(generation["wait"]["times"]) == 2
    cells = [(r.variant, r.benchmark, r.budget, r.wait_times) for r in table.itertuples()]
    assert set(cells) == expected and len(cells) == len(expected)
    assert set(table["model"]) == {"chain-qwen3"}
    for column in ("accuracy", "accuracy_std", "n_problems", "n_seeds", "mean_thinking_tokens"):
        assert column in table.columns, column
    assert (table["n_seeds"] == len(DEMO["generation"]["seeds"])).all()
    assert table["accuracy"].between(0, 1).all()
    # thinking is capped by the budget
    assert (table["mean_thinking_tokens"] <= table["budget"]).all()
    assert (table["mean_thinking_tokens"] > 0).all()
    # perplexity of every variant on the held-out text sits beside it
    assert table["perplexity"].notna().all() and (table["perplexity"] > 1).all()


def _cells(table: pd.DataFrame, variant: str, benchmark: str, wait: int = 0) -> pd.DataFrame:
    return table[(table["variant"] == variant) & (table["benchmark"] == benchmark)
                 & (table["wait_times"] == wait)].sort_values("budget")


def test_demo_dense_model_scales_with_the_thinking_budget(demo_run):
    """The trained model's accuracy rises with the budget: budget forcing cuts its chains short."""
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv")
    dense = _cells(table, "dense", "chain_math")
    assert len(dense) == len(DEMO["generation"]["budgets"]) >= 5
    smallest, largest = dense.iloc[0], dense.iloc[-1]
    assert largest["accuracy"] >= 0.85, dense[["budget", "accuracy"]]
    assert smallest["accuracy"] <= 0.35, dense[["budget", "accuracy"]]
    assert largest["accuracy"] - smallest["accuracy"] >= 0.5
    # non-decreasing within the intervals, and the budget is what cuts: few hits at the largest one
    for before, after in zip(dense.itertuples(), dense.iloc[1:].itertuples()):
        assert after.ci_high >= before.accuracy, dense[["budget", "accuracy", "ci_low", "ci_high"]]
    assert largest["budget_hit_rate"] <= 0.1 and smallest["budget_hit_rate"] >= 0.5
    # the multiple-choice form, graded as letters, scales too: well above chance (0.25) at the
    # largest budget; answers are found after forced and natural ends alike
    choice = _cells(table, "dense", "chain_choice")
    assert choice["accuracy"].iloc[-1] >= 0.45 and choice["accuracy"].iloc[-1] - choice["accuracy"].iloc[0] >= 0.2
    assert (dense["no_answer_rate"] <= 0.05).all() and (choice["no_answer_rate"] <= 0.05).all()


def test_demo_wait_extension_sits_beside_each_cell(demo_run):
    """With and without one Wait, side by side: the Wait only lengthens the thinking, and the
    trained model, whose chains end complete, closes again and keeps its answer."""
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv")
    keys = ["variant", "benchmark", "budget"]
    without = table[table["wait_times"] == 0].set_index(keys)
    with_wait = table[table["wait_times"] == 1].set_index(keys).loc[without.index]
    assert (with_wait["mean_thinking_tokens"] >= without["mean_thinking_tokens"] - 1e-9).all()
    largest = max(DEMO["generation"]["budgets"])
    dense = ("dense", "chain_math", largest)
    assert with_wait.loc[dense, "mean_thinking_tokens"] > without.loc[dense, "mean_thinking_tokens"]
    assert abs(with_wait.loc[dense, "accuracy"] - without.loc[dense, "accuracy"]) <= 0.1
    generations = pd.read_parquet(demo_run / "results" / "generations" / "chain-qwen3" / "dense" / "chain_math.parquet")
    waited = generations[(generations["wait_times"] == 1) & (generations["budget"] == largest)]
    assert (waited["waits"] == 1).mean() >= 0.9 and waited["thinking"].str.contains("Wait").mean() >= 0.9


def test_demo_heavy_pruning_lowers_the_curve_and_parallel_samples_recover_some(demo_run):
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv")
    largest = max(DEMO["generation"]["budgets"])
    at = table[(table["benchmark"] == "chain_math") & (table["budget"] == largest)
               & (table["wait_times"] == 0)].set_index("variant")
    dense = at.loc["dense", "accuracy"]
    heavy = [name for name, spec in DEMO["variants"].items() if spec.get("sparsity", 0) >= 0.5]
    assert min(at.loc[heavy, "accuracy"]) <= dense - 0.2, at["accuracy"]
    # every unstructured method at the same sparsity is in the table beside ShortGPT
    assert {"magnitude-50", "wanda-50", "sparsegpt-50", "shortgpt-1"} <= set(at.index)
    # with 4 samples at temperature 1 a damaged model is sometimes right: pass@4 above pass@1
    assert DEMO["generation"]["samples"] >= 4
    assert (at.loc[heavy, "pass@4"] >= at.loc[heavy, "pass@1"]).all()
    assert (at.loc[heavy, "pass@4"] - at.loc[heavy, "pass@1"]).max() >= 0.05


def test_demo_prunes_the_shipped_model_without_training(demo_run):
    """The demo prunes the model kept in config/demo/chain-qwen3 (trained once, at its settings),
    so every machine prunes the same weights."""
    manifest = json.loads((demo_run / "results" / "models" / "chain-qwen3" / "model.json").read_text())
    assert Path(manifest["path"]) == (demo_run / "config" / "demo" / "chain-qwen3").resolve()
    assert not (demo_run / "results" / "models" / "chain-qwen3" / "trained").exists()
    assert not (demo_run / "results" / "logs" / "train_demo").exists()
    history = pd.read_parquet(demo_run / "config" / "demo" / "chain-qwen3" / "training.parquet")
    assert len(history) == DEMO["models"]["chain-qwen3"]["demo"]["train"]["steps"]
    assert history["loss"].tail(50).mean() < 0.2 * history["loss"].head(10).mean()


# docs/demo-figures.csv: every figure README.md and docs/DEMO.md quote from the demo's table
FIGURES = ROOT / "docs" / "demo-figures.csv"


def test_demo_table_matches_the_documented_figures(demo_run):
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv").set_index(["variant", "benchmark", "budget", "wait_times"])
    figures = pd.read_csv(FIGURES)
    assert len(figures) >= 20 and set(figures["variant"]) <= set(DEMO["variants"])
    draws = len(DEMO["generation"]["seeds"]) * DEMO["generation"]["samples"]
    off = []
    for row in figures.itertuples(index=False):
        cell = table.loc[(row.variant, row.benchmark, row.budget, row.wait_times)]
        measure = row.metric
        # what another machine's float order can move (pipeline.reporting.reproduction.tolerance)
        allowed = tolerance(row.value, row.metric, draws * cell["n_problems"])
        if abs(cell[measure] - row.value) > allowed:
            off.append(f"{row.variant} {row.benchmark} {row.budget} wait {row.wait_times} {row.metric}: "
                       f"documented {row.value}, this run {cell[measure]:.4f} (allowed {allowed:.3f})")
    assert not off, "\n".join(off)


def test_demo_claims_hold_after_the_correction(demo_run):
    """The verdicts docs/DEMO.md draws from the claims table, where they are far from the threshold."""
    claims = pd.read_csv(demo_run / "results" / "tables" / "claims-chain-qwen3.csv")
    generation = DEMO["generation"]
    cells = len(generation["budgets"]) * len(generation["wait"]["times"]) * (len(DEMO["benchmarks"]) + 1)
    assert len(claims) == (len(DEMO["variants"]) - 1 + 3 + 1) * cells and claims["p_value"].notna().all()
    assert not (claims["verdict"] == "pruned ahead").any()
    verdicts = claims.set_index(["first", "second", "budget"])["verdict"].sort_index()
    for first, second, verdict in (("wanda-25", "shortgpt-1", "unstructured ahead"), ("wanda-50-owl", "wanda-50", "owl ahead"),
                                   ("magnitude-50-alphapruning", "magnitude-50", "uniform ahead"),
                                   ("shortgpt-1", "dense", "dense ahead")):
        assert (verdicts.loc[(first, second, 64)] == verdict).all(), (first, second)
    assert not verdicts.loc[("wanda-25", "shortgpt-1")].eq("structured ahead").any()
    assert not verdicts.loc[("wanda-20", "dense", 4)].str.endswith("ahead").any()  # identical at budget 4
    text = (demo_run / "results" / "tables" / "claims-chain-qwen3.md").read_text()
    assert f"{len(claims)} tests corrected together (Benjamini-Hochberg" in text


def test_demo_perplexity_ranks_variants_by_damage(demo_run):
    """Perplexity on what the model writes: dense lowest, then 20%, then 50% Wanda. Wanda 20%
    stays within 1e-3 of dense (documented 1.0366 against 1.0367); 50% is well above both."""
    table = pd.read_csv(demo_run / "results" / "tables" / "main.csv").drop_duplicates("variant").set_index("variant")
    ppl = table["perplexity"]
    assert ppl["dense"] == ppl.min(), ppl.sort_values()
    assert ppl["dense"] <= ppl["wanda-20"] < ppl["wanda-50"] - 0.05, ppl.sort_values()


def test_every_rule_wrote_its_log_and_benchmark_record(demo_run):
    logs = demo_run / "results" / "logs"
    for rule in ("base_model", "benchmark_data", "calibration", "masks", "export", "generate", "grade",
                 "aggregate", "plots"):
        assert list((logs / rule).rglob("*.log")), f"no log for {rule}"
        assert list((logs / rule).rglob("*.benchmark.tsv")), f"no benchmark record for {rule}"


def test_report_gathers_tables_and_plots(demo_run):
    snakemake(demo_run, "--configfile", "config/demo.yaml", "--report", "results/report.zip")
    import zipfile

    names = zipfile.ZipFile(demo_run / "results" / "report.zip").namelist()
    assert any(name.endswith("main.csv") for name in names), names
    assert any(name.endswith("accuracy_vs_budget-chain-qwen3.png") for name in names), names
    assert any(name.endswith("gpu_timeline.png") for name in names), names
    assert any(name.endswith("claims-chain-qwen3.md") for name in names), names
    assert any(name.endswith("forest-chain-qwen3--pooled.png") for name in names), names  # empty on the CPU: it says so


def test_nothing_to_do_after_a_complete_run(demo_run):
    result = snakemake(demo_run, "-n", "--configfile", "config/demo.yaml")
    assert scheduled_jobs(result.stdout) == {}, result.stdout[-3000:]


def _dry_run_with(workdir, config, name):
    path = write_config(workdir / f"{name}.yaml", config)
    jobs = scheduled_jobs(snakemake(workdir, "-n", "--configfile", path.name).stdout)
    print(f"{name}: scheduled {jobs}")
    return jobs


def test_changing_one_sparsity_reruns_only_that_variant(demo_run):
    config = copy.deepcopy(DEMO)
    config["variants"]["wanda-20"]["sparsity"] = 0.3
    jobs = _dry_run_with(demo_run, config, "sparsity")
    n_bench = len(DEMO["benchmarks"])
    assert jobs == {"masks": 1, "export": 1, "generate": n_bench, "grade": n_bench, "perplexity": 1,
                    "aggregate": 1, "plots": 1, "all": 1}


def test_changing_a_grading_option_reruns_grading_and_tables_only(demo_run):
    config = copy.deepcopy(DEMO)
    config["grading"] = {"timeout_s": 7}
    jobs = _dry_run_with(demo_run, config, "grading")
    cells = len(DEMO["variants"]) * len(DEMO["benchmarks"])
    assert jobs == {"grade": cells, "aggregate": 1, "plots": 1, "all": 1}


def test_changing_the_correction_redoes_the_tables_only(demo_run):
    config = copy.deepcopy(DEMO)
    config["tables"] = {"correction": "holm"}
    assert _dry_run_with(demo_run, config, "correction") == {"aggregate": 1, "plots": 1, "all": 1}


def test_adding_a_benchmark_schedules_only_its_jobs(demo_run):
    config = copy.deepcopy(DEMO)
    config["benchmarks"]["aime24-copy"] = {"file": "config/demo/aime24.jsonl", "grader": "integer"}
    jobs = _dry_run_with(demo_run, config, "benchmark")
    n_var = len(DEMO["variants"])
    assert jobs == {"benchmark_data": 1, "generate": n_var, "grade": n_var, "aggregate": 1, "plots": 1, "all": 1}


def test_forced_rerun_gives_identical_masks_and_generations(demo_run):
    """Identical config and seeds: bit-identical masks and, on the same machine, identical generations."""
    masks = demo_run / "results" / "masks" / "chain-qwen3" / "wanda-50.parquet"
    generations = demo_run / "results" / "generations" / "chain-qwen3" / "wanda-50" / "chain_math.parquet"
    before_masks, before_generations = pd.read_parquet(masks), pd.read_parquet(generations)
    shutil.rmtree(f"{generations}.shards")  # no cached thinking: generate everything again
    snakemake(demo_run, "--cores", "2", "--configfile", "config/demo.yaml", "--forcerun", str(masks.relative_to(demo_run)),
              str(generations.relative_to(demo_run)))
    after_masks, after_generations = pd.read_parquet(masks), pd.read_parquet(generations)
    assert after_masks["zeroed"].tolist() == before_masks["zeroed"].tolist()
    columns = ["problem_id", "seed", "budget", "thinking", "answer", "thinking_tokens", "answer_tokens", "hit_budget"]
    pd.testing.assert_frame_equal(after_generations[columns], before_generations[columns])


SMALL = yaml.safe_load((ROOT / "tests" / "configs" / "small.yaml").read_text())


def on_fake_gpus(workdir):
    """This CPU as a node with 4 GPUs: the GPU stages lease devices as on a real node."""
    return {"PRUNE_TTS_FAKE_GPUS": "4", "PRUNE_TTS_LEASE_DIR": str(workdir / "leases")}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The smallest complete run, with temporary checkpoints, on 4 fake GPUs with tensor parallel 2."""
    workdir = copy_workflow(tmp_path_factory.mktemp("small"))
    config = copy.deepcopy(SMALL)
    config["pruning"] = {"keep_checkpoints": False}
    config["generation"]["vllm"]["tensor_parallel_size"] = 2
    write_config(workdir / "small.yaml", config)
    snakemake(workdir, "--cores", "2", "--configfile", "small.yaml", env=on_fake_gpus(workdir))
    return workdir, config


def test_every_gpu_job_held_devices_of_its_own(small_run):
    """From the lease log: every GPU job leased its devices, generation two of them, no device
    was held by two jobs at once, and several devices were busy at once (GPU jobs take one core)."""
    workdir, config = small_run
    leases = [json.loads(line) for line in (workdir / "results" / "logs" / "gpus.jsonl").read_text().splitlines()]
    n_variants = len(config["variants"])
    pruned = n_variants - 1
    rules = sorted(lease["rule"] for lease in leases)
    assert rules == sorted(["generate"] * n_variants + ["perplexity"] * n_variants + ["masks"] * pruned), rules
    assert all(len(lease["devices"]) == 2 for lease in leases if lease["rule"] in ("generate", "perplexity"))
    assert all(lease["exit_status"] == 0 and set(lease["devices"]) <= {0, 1, 2, 3} for lease in leases)
    assert {tuple(sorted(lease["wildcards"])) for lease in leases if lease["rule"] == "generate"} == \
        {("benchmark", "model", "variant")}
    for i, a in enumerate(leases):
        for b in leases[i + 1:]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["devices"]) & set(b["devices"]), (a, b)
    busy = max(sum(len(b["devices"]) for b in leases if b["start"] <= a["start"] < b["end"]) for a in leases)
    assert busy >= 3, leases
    # the report's timeline of them
    assert (workdir / "results" / "plots" / "gpu_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "GPU 3 (" in (workdir / "results" / "plots" / "gpu_timeline.svg").read_text()


def test_temporary_checkpoints_are_removed_once_generated(small_run):
    workdir, _ = small_run
    assert (workdir / "results" / "tables" / "main.csv").exists()
    assert (workdir / "results" / "masks" / "tiny-qwen3" / "magnitude-50.parquet").exists()
    assert not (workdir / "results" / "checkpoints" / "tiny-qwen3" / "magnitude-50").exists()


def test_compute_columns_survive_temporary_checkpoints(small_run):
    """Each variant's cost is recorded while its checkpoint exists and reaches the tables."""
    workdir, _ = small_run
    table = pd.read_csv(workdir / "results" / "tables" / "main.csv").set_index("variant")
    dense, pruned = table.loc["dense"], table.loc["magnitude-50"]
    assert dense["nonzero_params"] <= dense["params"] == pruned["params"]
    assert pruned["nonzero_params"] < 0.8 * pruned["params"]
    assert pruned["flops_per_token_dense_hw"] == dense["flops_per_token_dense_hw"]
    assert pruned["flops_per_token_ideal_sparse"] < 0.8 * dense["flops_per_token_ideal_sparse"]
    for row in (dense, pruned):
        assert row["checkpoint_bytes"] > 0 and row["generation_tokens_per_s"] > 0 and row["blocks_kept"] == 4
        assert row["flops_per_problem_dense_hw"] >= row["flops_per_problem_ideal_sparse"] > 0
        assert row["mean_prompt_tokens"] > 0
    equal = pd.read_csv(workdir / "results" / "tables" / "equal-compute-tiny-qwen3.csv")
    assert set(equal["accounting"]) == {"dense_hw", "ideal_sparse"} and set(equal["variant"]) == {"magnitude-50"}
    assert (workdir / "results" / "plots" / "accuracy_vs_compute-tiny-qwen3.svg").exists()


def test_a_smaller_budget_reuses_the_thinking(small_run):
    workdir, config = small_run
    config = copy.deepcopy(config)
    config["generation"]["budgets"] = [4] + config["generation"]["budgets"]
    write_config(workdir / "more-budgets.yaml", config)
    fake = on_fake_gpus(workdir)
    dry = scheduled_jobs(snakemake(workdir, "-n", "--configfile", "more-budgets.yaml", env=fake).stdout)
    print("a smaller budget: scheduled", dry)
    assert "masks" not in dry and dry["generate"] == len(config["variants"])
    snakemake(workdir, "--cores", "2", "--configfile", "more-budgets.yaml", env=fake)
    for variant in config["variants"]:
        log = (workdir / "results" / "logs" / "generate" / "tiny-qwen3" / variant / "aime24.log").read_text()
        assert "cached thinking (budget 8) reused; generating answers only" in log, log[-2000:]
    table = pd.read_csv(workdir / "results" / "tables" / "main.csv")
    assert sorted(set(table["budget"])) == [4, 8]
    assert (table.loc[table.budget == 4, "mean_thinking_tokens"] <= 4).all()


def test_wait_settings_run_side_by_side(small_run):
    """Two Wait settings: every cell once per setting, and the per-setting pivots the rules expect."""
    workdir, config = small_run
    config = copy.deepcopy(config)
    config["generation"].update(budgets=[8, 32], wait={"times": [0, 1]})
    write_config(workdir / "waits.yaml", config)
    snakemake(workdir, "--cores", "2", "--configfile", "waits.yaml", env=on_fake_gpus(workdir))
    table = pd.read_csv(workdir / "results" / "tables" / "main.csv")
    cells = [(v, b, w) for v in config["variants"] for b in (8, 32) for w in (0, 1)]
    assert sorted(zip(table["variant"], table["budget"], table["wait_times"])) == sorted(cells)
    assert (table["status"] == "ok").all()
    for budget in (8, 32):
        for setting in (0, 1):
            assert (workdir / "results" / "tables" / f"pivot-tiny-qwen3-{budget}-wait{setting}.md").exists()
    generations = pd.read_parquet(workdir / "results" / "generations" / "tiny-qwen3" / "dense" / "aime24.parquet")
    assert not generations[generations["wait_times"] == 0]["thinking"].str.contains("Wait").any()
    assert (generations["waits"] <= generations["wait_times"]).all()


def test_changing_a_training_setting_retrains_and_reruns_what_depends_on_the_model(demo_run):
    config = copy.deepcopy(DEMO)
    config["models"]["chain-qwen3"]["demo"]["train"]["steps"] += 1
    jobs = _dry_run_with(demo_run, config, "training")
    assert jobs["train_demo"] == 1 and jobs["base_model"] == 1
    assert jobs["generate"] == len(DEMO["variants"]) * len(DEMO["benchmarks"])
    assert "benchmark_data" not in jobs  # the benchmarks do not depend on the model


def test_changing_the_task_regenerates_benchmarks_and_retrains(demo_run):
    config = copy.deepcopy(DEMO)
    config["demo_task"]["max_terms"] -= 1
    jobs = _dry_run_with(demo_run, config, "task")
    assert jobs["train_demo"] == 1 and jobs["benchmark_data"] == len(DEMO["benchmarks"])
