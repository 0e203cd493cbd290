"""The grid-cost estimate: its job counts are the workflow's, its arithmetic follows its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline import cost
from pipeline.core import config as cfg
from tests import real_shapes
from tests.workflow_util import ROOT, copy_workflow, scheduled_jobs, snakemake


@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/config.yaml"])
def test_job_counts_match_a_dry_run(tmp_path, monkeypatch, configfile):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n", "--configfile", configfile, "--config", "preflight=False", timeout=600)  # no Hub here
    expected = scheduled_jobs(result.stdout + result.stderr)
    assert expected, result.stdout[-2000:]
    monkeypatch.chdir(workdir)
    assert cost.counts(cost.load_config([configfile])) == expected


def _small(tmp_path, **generation):
    config = cfg.prepare({
        "models": {"tiny": {"demo": {}, "template": "qwen3"}},
        "variants": {"dense": {"method": "dense"}, "sparsegpt-50": {"method": "sparsegpt", "sparsity": 0.5},
                     "shortgpt-1": {"method": "shortgpt", "layers": 1}},
        "benchmarks": {"aime24": {"file": str(ROOT / "config/demo/aime24.jsonl"), "limit": 2}},
        "calibration": {"c4": {"source": "file", "path": "x.txt", "samples": 8, "length": 64},
                        "pg19": {"source": "file", "path": "x.txt", "samples": 8, "length": 64}},
        "generation": {"budgets": [16, 32], "seeds": [7, 11], "answer_max_tokens": 16, **generation},
    })
    return config


def test_generation_tokens_follow_budgets_seeds_and_the_answer_cap(tmp_path):
    config = _small(tmp_path)
    tokens = cost.generation_tokens(config, "aime24", answer_tokens=400)
    runs = 2 * 2  # limit 2 of the file's 3 problems, two seeds, one sample
    assert tokens["requests"] == runs
    assert tokens["thinking"] == runs * 32  # once, to the largest budget
    assert tokens["answers_expected"] == tokens["answers_bound"] == runs * 2 * 16  # capped at answer_max_tokens
    more = cost.generation_tokens(_small(tmp_path, samples=3, wait={"times": 1}), "aime24", answer_tokens=400)
    assert more["thinking"] == 3 * 2 * tokens["thinking"]


def test_wait_settings_think_at_the_largest_and_answer_each(tmp_path):
    one = cost.generation_tokens(_small(tmp_path), "aime24", answer_tokens=400)
    grid = cost.generation_tokens(_small(tmp_path, wait={"times": [0, 1, 2]}), "aime24", answer_tokens=400)
    assert grid["thinking"] == 3 * one["thinking"]  # one run with 2 Waits: 3 rounds
    assert grid["answers_expected"] == 3 * one["answers_expected"] and grid["rows"] == 3 * one["rows"]
    # s1's rule thinks apart for Wait off: 1 + 3 rounds
    s1 = cost.generation_tokens(_small(tmp_path, wait={"times": [0, 2]}, wait_rule="s1"), "aime24", answer_tokens=400)
    assert s1["thinking"] == 4 * one["thinking"] and s1["rows"] == 2 * one["rows"]


def test_tensor_parallel_gpu_hours_follow_the_figures(tmp_path, tiny_model):
    """A model on disk: GPU-hours of generation scale with the GPUs held and the stated
    tensor-parallel efficiency; the engine start is paid once per GPU and job."""
    def config(tp):
        spec = _small(tmp_path, vllm={"tensor_parallel_size": tp})
        spec["models"] = {"tiny": {"path": str(tiny_model), "template": "qwen3", "dtype": "bfloat16", "size_b": 1,
                                   "sampling": {}}}
        return spec

    figs = cost.figures({"engine_start_s": 0, "load_gb_per_s": 1e12})
    one = cost.estimate(config(1), figs)["rows"]["generate"]["gpu_h"]
    four = cost.estimate(config(4), figs)["rows"]["generate"]["gpu_h"]
    assert four == pytest.approx(one / figs["tensor_parallel_efficiency"]["value"])
    started = cost.estimate(config(4), cost.figures({"engine_start_s": 3600, "load_gb_per_s": 1e12}))
    jobs = started["rows"]["generate"]["jobs"]
    assert started["rows"]["generate"]["gpu_h"] == pytest.approx(four + 4 * jobs)


def test_checkpoint_bytes_match_safetensors_on_disk(tmp_path, tiny_model):
    """bytes per parameter times the parameters counted from config.json is what
    save_pretrained writes (float32 here), give or take the JSON headers."""
    config = _small(tmp_path)
    config["models"] = {"tiny": {"path": str(tiny_model), "template": "qwen3", "dtype": "float32", "size_b": 1,
                                 "sampling": {}}}
    shape = cost.model_shape(config, "tiny")
    on_disk = sum(p.stat().st_size for p in tiny_model.glob("*.safetensors"))
    assert shape["params"] * cost.BYTES_PER_PARAM["float32"] == pytest.approx(on_disk, rel=0.02)
    result = cost.estimate(config, cost.figures())
    assert result["checkpoints"]["count"] == 2  # sparsegpt-50 and shortgpt-1; dense reuses the base model
    full = shape["params"] * 4
    removed_one = full - shape["linear"] / shape["layers"] * 4
    assert result["checkpoints"]["bytes"] == pytest.approx(full + removed_one)

@pytest.mark.parametrize("architecture", ["qwen3", "qwen2", "llama"])
def test_demo_spec_count_is_the_built_models(tiny_model_factory, architecture):
    spec = {"architecture": architecture, "hidden": 128, "heads": 4, "kv_heads": 2, "layers": 3}
    built = cost._shape_from_config(tiny_model_factory(**spec))
    from pipeline.models.demo_model import DEFAULTS

    assert cost._shape_from_demo({**DEFAULTS, **spec}) == {**built, "source": "demo spec"}


def test_keep_checkpoints_false_is_reported_apart(tmp_path):
    config = _small(tmp_path)
    kept = cost.render(cost.estimate(config, cost.figures()), cost.figures())
    config["pruning"]["keep_checkpoints"] = False
    dropped = cost.render(cost.estimate(config, cost.figures()), cost.figures())
    assert "kept (pruning.keep_checkpoints: true)" in kept
    assert "deleted once its generations" in dropped and "not in the total" in dropped


def test_unknown_figure_is_refused():
    with pytest.raises(ValueError, match="unknown figure 'tokens_per_s'"):
        cost.figures({"tokens_per_s": 1})


def test_command_line_writes_the_table_with_measured_figures(tmp_path):
    figures = tmp_path / "measured.json"
    figures.write_text(json.dumps({"decode_tokens_per_s_8b": {"value": 1234, "source": "measured on a test"}}))
    out = tmp_path / "cost.md"
    subprocess.run([sys.executable, "-m", "pipeline.cost", "--configfile", "config/demo.yaml", "--figures", str(figures),
                    "--out", str(out)], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = out.read_text()
    assert "| decode_tokens_per_s_8b | 1234 | tokens/s per GPU | measured on a test |" in text
    demo = cfg.load(ROOT / "config" / "demo.yaml")
    assert f"| generate | {len(demo['variants']) * len(demo['benchmarks'])} |" in text


@pytest.mark.parametrize("name", sorted(real_shapes.SHAPES))
def test_real_shapes_have_the_published_parameter_counts(name):
    """The shapes the real-size runs and the GPU check use: built on the meta device, their
    parameters match the model cards' totals to the digits the cards give."""
    counts = real_shapes.parameter_counts(real_shapes.model_config(name))
    for key, published in real_shapes.SHAPES[name]["published"].items():
        digits = len(str(published).partition(".")[2])
        assert abs(counts[key] / 1e9 - published) < 10 ** -digits, (key, counts[key], published)
    assert counts["non_embedding"] < counts["total"]


@pytest.mark.workflow
def test_gpu_check_runs_at_the_small_size_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py --small: every step of the GPU check (build, masks, export, vLLM
    generation, the cost from the measured figures) on a 2-block model on the CPU."""
    out = tmp_path / "check"
    subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--small", "--out", str(out)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    report = json.loads((out / "gpu_check.json").read_text())
    generate = report["generate"]
    assert generate["requests"] == report["size"]["problems"] * report["size"]["seeds"]
    assert generate["tokens"] > 0 and generate["tokens_per_s"] > 0 and generate["engine_start_s"] > 0
    assert report["masks"]["rss_mib"] > 0 and report["export"]["bytes"] > 0
    measured = json.loads((out / "measured.json").read_text())
    text = (out / "cost-measured.md").read_text()
    assert f"| decode_tokens_per_s_8b | {measured['decode_tokens_per_s_8b']['value']:g} |" in text
    assert (out / "cost-stated.md").read_text() != text


def test_a_model_on_the_cpu_is_timed_in_cpu_hours(tmp_path, tiny_model):
    """models.<name>.device: cpu: no GPU-hours; CPU-hours from the cpu_* figures, generation
    scaled as 1/parameters from the measured model's size."""
    config = _small(tmp_path)
    config["models"] = {"tiny": {"path": str(tiny_model), "template": "qwen3", "dtype": "float32", "size_b": 1,
                                 "sampling": {}, "device": "cpu"}}
    figs = cost.figures({"cpu_engine_start_s": 0, "load_gb_per_s": 1e12, "cpu_decode_tokens_per_s": 100,
                         "cpu_reference_params_b": 1e-3})
    result = cost.estimate(config, figs)
    rows = result["rows"]
    assert all(row["gpu_h"] == 0 for row in rows.values())
    params = result["shapes"]["tiny"]["params"]
    tokens = sum(cost.generation_tokens(config, "aime24", 400)[k] for k in ("thinking", "answers_expected"))
    per_job = tokens / (100 * 1e6 / params) / 3600
    assert rows["generate"]["cpu_h"] == pytest.approx(rows["generate"]["jobs"] * per_job)
    assert rows["masks"]["cpu_h"] > 0 and rows["stats_activations"]["cpu_h"] > 0
    faster = cost.estimate(config, cost.figures({**{k: v["value"] for k, v in figs.items() if k.startswith("cpu")},
                                                 "load_gb_per_s": 1e12, "cpu_gflops": 2 * figs["cpu_gflops"]["value"]}))
    assert faster["rows"]["masks"]["cpu_h"] == pytest.approx(rows["masks"]["cpu_h"] / 2)
    assert "CPU-hours of the models with device: cpu" in cost.render(result, figs)
