"""Preflight: unreachable models and data sets are named with their fix before any job runs."""

from __future__ import annotations

import pytest

from pipeline import preflight
from pipeline.core import config as cfg
from pipeline.core import gpus, slices
from tests.workflow_util import ROOT, copy_workflow, snakemake


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")


def test_study_grid_offline_names_each_missing_model_and_data_set(offline):
    config = cfg.load(ROOT / "config" / "config.yaml")
    jobs = [("base_model", {"model": m}) for m in config["models"]]
    jobs += [("benchmark_data", {"benchmark": b}) for b in config["benchmarks"]]
    jobs += [("calibration", {"model": "qwen3-8B", "calibration": c}) for c in config["calibration"]]
    found = preflight.problems(config, jobs)
    assert len(found) == len(config["models"]) + len(config["benchmarks"]) + len(config["calibration"])
    joined = "\n".join(found)
    for key in ("models.qwen3-8B.hub", "models.s1.1-7B.hub", "benchmarks.gpqa_diamond.hub", "calibration.c4.source"):
        assert key in joined
    assert "Qwen/Qwen3-8B is not in the local Hugging Face cache" in joined
    assert "models.qwen3-8B.path" in joined  # the local alternative is named
    # the demo hint, once, with the target before --configfile (which takes several files)
    hint = preflight.PreflightError(found).hint
    assert "snakemake --cores 2 all --configfile config/demo.yaml" in hint
    assert "config/demo.yaml" not in joined


def test_missing_local_files_are_named(tmp_path):
    config = cfg.load(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["benchmarks"]["math500"]["file"] = str(tmp_path / "nope.jsonl")
    config["calibration"]["c4"]["path"] = str(tmp_path / "nope.txt")
    config["models"]["tiny-qwen3"] = {**{k: v for k, v in config["models"]["tiny-qwen3"].items() if k != "demo"},
                                      "path": str(tmp_path)}
    jobs = [("benchmark_data", {"benchmark": "math500"}), ("calibration", {"model": "tiny-qwen3", "calibration": "c4"}),
            ("base_model", {"model": "tiny-qwen3"})]
    found = preflight.problems(config, jobs)
    assert any("benchmarks.math500.file" in p and "nope.jsonl" in p for p in found)
    assert any("calibration.c4.path" in p for p in found)
    assert any("models.tiny-qwen3.path" in p and "config.json" in p for p in found)


def test_generation_of_a_real_model_without_gpu_is_refused(monkeypatch):
    monkeypatch.delenv("PRUNE_TTS_FAKE_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    config = cfg.load(ROOT / "config" / "config.yaml")
    found = preflight.problems(config, [("generate", {"model": "qwen3-8B", "variant": "dense", "benchmark": "aime24"})])
    assert len(found) == 1 and "need a GPU" in found[0] and "profiles/slurm" in found[0]
    assert found[0].startswith("models.qwen3-8B.device:") and "models.qwen3-8B.device: cpu" in found[0]
    # not when the jobs go to a cluster, whose nodes have the GPUs
    assert preflight.problems(config, [("generate", {"model": "qwen3-8B", "variant": "dense", "benchmark": "aime24"})], local=False) == []
    # nor when the model says it runs on the CPU: then no job of it holds a GPU
    config["models"]["qwen3-8B"]["device"] = "cpu"
    jobs = [(rule, {"model": "qwen3-8B", "variant": "dense", "benchmark": "aime24"})
            for rule in ("generate", "perplexity", "masks", "stats_activations")]
    assert [line for line in preflight.problems(config, jobs) if "GPU" in line] == []  # (wikitext2 is on the Hub)
    assert {gpus.job_devices(config, rule, "qwen3-8B") for rule, _ in jobs} == {0}
    assert slices.mask_slice(config, "qwen3-8B", "dense")["device"] == "cpu"
    assert slices.perplexity_slice(config, "qwen3-8B", "dense")["device"] == "cpu"
    config["generation"]["vllm"]["tensor_parallel_size"] = 2
    [line] = [line for line in preflight.problems(config, jobs) if "GPU" in line]
    assert line.startswith("generation.vllm.tensor_parallel_size:") and "models.qwen3-8B.device: cpu" in line


def test_snakemake_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--cores", "1", "--configfile", "config/config.yaml", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "prune-tts: cannot start" in output
    assert "models.qwen3-8B.hub" in output
    assert not (workdir / "results").exists(), "a job ran before the preflight stopped the workflow"


def _no_gpu(monkeypatch):
    monkeypatch.delenv("PRUNE_TTS_FAKE_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")


@pytest.mark.workflow
def test_dry_run_of_the_study_without_gpu_or_hub_is_refused(tmp_path, monkeypatch):
    """Snakemake skips onstart in dry runs; the preflight still runs once the jobs are known."""
    _no_gpu(monkeypatch)
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for key in ("models.qwen3-8B.hub", "models.s1.1-7B.hub", "benchmarks.gpqa_diamond.hub", "calibration.c4.source",
                "perplexity.text", "models.qwen3-8B.device: the generate jobs"):
        assert key in output, key
    block = output[output.index("prune-tts: cannot start"):]  # Snakemake's own header names the folder
    assert "Traceback" not in block and str(workdir) not in block
    assert "Job stats" not in output  # refused before the job list


@pytest.mark.workflow
def test_slurm_dry_run_from_a_node_without_gpu_leaves_the_gpu_to_the_jobs(tmp_path, monkeypatch):
    _no_gpu(monkeypatch)
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n", "--workflow-profile", "profiles/slurm", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "models.qwen3-8B.hub" in output and "perplexity.text" in output
    assert "need a GPU" not in output


@pytest.mark.workflow
def test_dry_run_of_the_demo_passes(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n", "results/tables/main.csv", "--configfile", "config/demo.yaml")
    assert "cannot" not in result.stdout + result.stderr and "generate" in result.stdout


def test_lint_and_rule_listing_run_no_preflight(tmp_path):
    """--lint and --list-rules build no jobs: nothing to check, and no Hub or GPU asked for."""
    workdir = copy_workflow(tmp_path)
    linted = snakemake(workdir, "--lint", check=False)
    assert linted.returncode == 0 and "cannot start" not in linted.stdout + linted.stderr
    listed = snakemake(workdir, "--list-rules", check=False)
    assert listed.returncode == 0 and "generate" in listed.stdout


def _cached_hub_config(cache, repo: str, config: dict) -> None:
    """A Hugging Face cache holding a repository's config.json and nothing else (no weights)."""
    import json

    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text(json.dumps(config))


def test_hub_model_depth_and_context_come_from_its_config_json_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)  # no results/ here: nothing resolved yet
    _cached_hub_config(tmp_path / "hub", "Qwen/Qwen3-8B", {"num_hidden_layers": 2, "max_position_embeddings": 1024})
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = cfg.load(ROOT / "config" / "config.yaml")
    jobs = [("masks", {"model": "qwen3-8B", "variant": "shortgpt-2"}),
            ("calibration", {"model": "qwen3-8B", "calibration": "c4"})]
    facts, problem = preflight.model_facts(config, "qwen3-8B", reachable=True)
    assert (facts.depth, facts.context, problem) == (2, 1024, None)
    found = "\n".join(preflight.problems(config, jobs))
    assert "variants.shortgpt-2.layers: removes 2 of model qwen3-8B's 2 blocks" in found
    assert "calibration.c4.length: 2048 tokens, longer than model qwen3-8B's context of 1024" in found
    # a model whose config.json cannot be had: its checks are skipped, not guessed
    facts, problem = preflight.model_facts(config, "s1.1-7B", reachable=True)
    assert (facts.depth, facts.context, problem) == (None, None, None)


def test_s1_rounds_of_the_largest_wait_setting_must_fit_the_context(tiny_model, monkeypatch):
    """Under s1's rule every Wait round may run to the budget: the largest setting decides."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PRUNE_TTS_FAKE_GPUS", "1")
    config = cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")
    config["models"]["tiny-qwen3"] = {"path": str(tiny_model), "template": "qwen3"}
    # prompts of up to 656 tokens: 1 + 1 rounds of 1,200 tokens fit in 4,096, 1 + 2 do not
    config["generation"].update(budgets=[1200], wait_rule="s1", vllm={"max_model_len": 4096})
    jobs = [("generate", {"model": "tiny-qwen3", "variant": "dense", "benchmark": "math500"})]
    for times, refused in (([0, 1], False), ([0, 2], True), (2, True)):
        config["generation"]["wait"] = {"times": times}
        found = "\n".join(preflight.problems(cfg.prepare(config), jobs))
        assert ("generation.wait_rule s1 lets each of the 3 thinking rounds" in found) == refused, (times, found)
        assert ("generation.vllm.max_model_len" in found) == refused, found


def test_demo_model_context_comes_from_its_settings_before_it_is_built(tmp_path, monkeypatch):
    """A demo model has no config.json before it is built: its context is the demo's own."""
    from pipeline.models.demo_model import POSITIONS

    monkeypatch.chdir(ROOT)  # the demo's files are relative to the workflow's folder
    config = cfg.load(ROOT / "config" / "demo.yaml")
    monkeypatch.chdir(tmp_path)  # no results/ here: nothing built yet
    config["calibration"]["task"]["length"] = POSITIONS + 904
    facts, problem = preflight.model_facts(config, "chain-qwen3", reachable=True)
    assert (facts.depth, facts.context, problem) == (4, POSITIONS, None)
    found = "\n".join(preflight.problems(config, [("calibration", {"model": "chain-qwen3", "calibration": "task"})]))
    assert f"calibration.task.length: {POSITIONS + 904} tokens, longer than model chain-qwen3's context of {POSITIONS}" in found
    assert "Fix: set it to at most 4096" in found
