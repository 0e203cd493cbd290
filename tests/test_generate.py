"""The generate stage: the table it writes, resuming a killed job, reusing thinking for a new
budget, and the errors it raises before any expensive work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core import config as cfg
from pipeline.core import slices
from pipeline.core.artifacts import read_provenance, write_table
from pipeline.stages import generate

ROOT = Path(__file__).resolve().parent.parent


def make_spec(model_dir, **generation) -> dict:
    config = cfg.prepare({
        "models": {"tiny": {"path": str(model_dir), "template": "qwen3", "dtype": "float32"}},
        "variants": {"dense": {"method": "dense"}},
        "benchmarks": {"mix": {"file": "unused.jsonl", "grader": "choice"}},
        "generation": {"budgets": [4, 8], "seeds": [7, 11], "answer_max_tokens": 4,
                       "vllm": {"max_model_len": 1024, "enforce_eager": True, "dtype": "float32"}, **generation},
    })
    return slices.generation_slice(config, "tiny", "dense", "mix")


@pytest.fixture
def benchmark(tmp_path) -> Path:
    rows = [
        {"id": "m1", "problem": "What is 2 + 3?", "answer": "5", "choices": None},
        {"id": "c1", "problem": "Which is a prime?", "answer": "7", "choices": ["7", "8", "9", "10"]},
        {"id": "m2", "problem": "Compute 6 * 7.", "answer": "42", "choices": None},
    ]
    path = tmp_path / "bench.parquet"
    write_table(pd.DataFrame(rows), path)
    return path


# --------------------------------------------------------------------------- errors, no engine


def _fails(capsys, argv, match: str) -> None:
    assert generate.main(argv) == 2
    assert match in capsys.readouterr().err


def test_missing_model_folder(tmp_path, benchmark, capsys, tiny_model):
    spec = json.dumps(make_spec(tiny_model))
    _fails(capsys, ["--model", str(tmp_path / "nowhere"), "--benchmark", str(benchmark), "--spec", spec,
                    "--out", str(tmp_path / "out.parquet")], "does not exist")
    manifest = tmp_path / "model.json"
    manifest.write_text(json.dumps({"path": str(tmp_path / "deleted")}))
    _fails(capsys, ["--model", str(manifest), "--benchmark", str(benchmark), "--spec", spec,
                    "--out", str(tmp_path / "out.parquet")], "holds no config.json")


def test_budget_plus_answer_cap_over_context(tmp_path, benchmark, capsys, tiny_model):
    spec = make_spec(tiny_model, budgets=[100], answer_max_tokens=64)
    spec["generation"]["vllm"]["max_model_len"] = 128
    with pytest.raises(SystemExit) as refused:  # the config check of the stage's spec, before loading
        generate.main(["--model", str(tiny_model), "--benchmark", str(benchmark), "--spec", json.dumps(spec),
                       "--out", str(tmp_path / "out.parquet")])
    assert refused.value.code == 1 and "generation.answer_max_tokens" in capsys.readouterr().err


def test_s1_wait_rule_needs_room_for_every_round(tmp_path, benchmark, capsys, tiny_model):
    spec = make_spec(tiny_model, budgets=[400], answer_max_tokens=64, wait={"times": 2}, wait_rule="s1")
    _fails(capsys, ["--model", str(tiny_model), "--benchmark", str(benchmark), "--spec", json.dumps(spec),
                    "--out", str(tmp_path / "out.parquet")], "generation.wait_rule s1 lets each of the 3 thinking rounds")
    assert not (tmp_path / "out.parquet.shards").exists()


def test_cuda_vllm_without_a_gpu(tmp_path, benchmark, capsys, tiny_model, monkeypatch):
    import torch

    from pipeline.generation import vllm_backend

    monkeypatch.setattr(vllm_backend, "installed", lambda: ("vllm", "0.33.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fails(capsys, ["--model", str(tiny_model), "--benchmark", str(benchmark), "--spec",
                    json.dumps(make_spec(tiny_model)), "--out", str(tmp_path / "out.parquet")], "install the cpu extra")
    assert not (tmp_path / "out.parquet.shards").exists()


# --------------------------------------------------------------------------- Wait settings and the thinking cache


def test_cached_thinking_serves_only_the_wait_settings_it_yields(tmp_path, benchmark, tiny_model, capfd):
    """The thinking cache records the Wait setting it was generated with: it serves smaller
    settings (under s1's rule not setting 0 from a run with Wait on), never larger ones, and what
    it serves equals a fresh run."""
    from transformers import AutoTokenizer

    from pipeline.generation import templates
    from tests.test_budget_forcing import ScriptedBackend

    bound = templates.bind(templates.get("qwen3"), AutoTokenizer.from_pretrained(tiny_model), tiny_model, "Wait")
    backend = ScriptedBackend(bound, stop_every=5)
    keys = ["problem_id", "seed", "sample", "budget", "wait_times"]

    def run(out, rule, times):
        spec = make_spec(tiny_model, budgets=[4, 8, 16], wait={"times": times}, wait_rule=rule)
        capfd.readouterr()
        table = generate.run(spec, tiny_model, benchmark, out, backend=backend).sort_values(keys, ignore_index=True)
        return table, "cached thinking (budget 16) reused" in capfd.readouterr().err

    for rule, first, later, reused in (("project", [1], [0, 1], True), ("project", [0, 1], [0, 2], False),
                                       ("s1", [2], [1, 2], True), ("s1", [2], [0, 2], False)):
        out = tmp_path / f"{rule}-{first}-{later}.parquet"
        run(out, rule, first)
        table, was_reused = run(out, rule, later)
        assert was_reused == reused, (rule, first, later)
        fresh, _ = run(tmp_path / f"fresh-{rule}-{later}.parquet", rule, later)
        pd.testing.assert_frame_equal(table, fresh)
        assert sorted(set(table["wait_times"])) == later
        assert len(table) == 3 * 2 * 3 * len(later)  # problems x seeds x budgets x settings


# --------------------------------------------------------------------------- vLLM, shared engine


@pytest.mark.vllm
def test_generations_table(tmp_path, benchmark, tiny_model, vllm_engine):
    from pipeline.generation.vllm_backend import VllmBackend

    spec = make_spec(tiny_model, samples=2, budgets=[4, 8, 32], wait={"times": [0, 1]})
    out = tmp_path / "gen.parquet"
    generate.run(spec, tiny_model, benchmark, out, backend=VllmBackend(vllm_engine, spec["sampling"]))
    table = pd.read_parquet(out)
    assert list(table.columns) == generate.COLUMNS
    assert len(table) == 3 * 2 * 2 * 3 * 2  # problems x seeds x samples x budgets x Wait settings
    assert sorted(set(table.wait_times)) == [0, 1] and (table.waits <= table.wait_times).all()
    # Wait off: never a Wait in the thinking; Wait x1: every thinking that ended by itself with room
    # left for the Wait and one more token was extended once (the same run cut with 0 or 1 Wait)
    assert not table[table.wait_times == 0].thinking.str.contains("Wait").any()
    keys = ["problem_id", "seed", "sample", "budget"]
    pairs = table[table.wait_times == 0].merge(table[table.wait_times == 1], on=keys, suffixes=("_0", "_1"))
    from transformers import AutoTokenizer

    wait = len(AutoTokenizer.from_pretrained(tiny_model).encode("Wait", add_special_tokens=False))
    room = pairs[~pairs.hit_budget_0 & (pairs.thinking_tokens_0 + wait < pairs.budget)]
    assert len(room) > 0
    assert (room.waits_1 == 1).all() and room.thinking_1.str.contains("Wait").all()
    assert table.groupby(["problem_id", "seed", "sample"]).sample_seed.nunique().eq(1).all()
    assert table.drop_duplicates(["problem_id", "seed", "sample"]).sample_seed.is_unique
    assert (table.thinking_tokens <= table.budget).all() and (table.answer_tokens <= 4).all()
    assert (table.hit_budget == (table.thinking_tokens == table.budget)).all()
    assert set(table.backend) == {"vllm"} and table.engine_version.str.startswith("vllm").all()
    mcq = table[table.problem_id == "c1"]
    assert mcq.choice_order.map(len).eq(4).all() and set(mcq.gold) <= set("ABCD")
    assert table[table.problem_id == "m1"].choice_order.isna().all()
    assert read_provenance(out)["config"] == spec


# --------------------------------------------------------------------------- resume (transformers)


def test_killed_job_resumes_and_new_budget_reuses_thinking(tmp_path, benchmark, tiny_model, capfd):
    spec = make_spec(tiny_model, backend="transformers", seeds=[1, 2, 3, 4], budgets=[8, 48])
    out = tmp_path / "gen.parquet"
    argv = [sys.executable, "-m", "pipeline.stages.generate", "--model", str(tiny_model), "--benchmark", str(benchmark),
            "--spec", json.dumps(spec), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = tmp_path / "gen.parquet.shards" / "seed-1.parquet"
    job = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not first.exists() and job.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
    finally:
        job.wait()
    assert first.exists() and not out.exists()
    stamp = first.stat().st_mtime_ns

    restart = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert restart.returncode == 0, restart.stderr
    assert "seed 1: finished shard" in restart.stderr and "seed 1 thinking" not in restart.stderr
    assert "seed 4 answers" in restart.stderr
    assert first.stat().st_mtime_ns == stamp
    before = pd.read_parquet(out)
    assert len(before) == 3 * 4 * 2

    spec["generation"]["budgets"] = [4, 8, 48]  # a smaller budget: answers only
    capfd.readouterr()
    after = generate.run(spec, tiny_model, benchmark, out)
    err = capfd.readouterr().err
    assert ", round 0)" not in err and err.count("cached thinking (budget 48) reused") == 4
    assert len(after) == 3 * 4 * 3
    keys = ["problem_id", "seed", "sample", "budget"]
    same = after[after.budget != 4].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(same, before.sort_values(keys).reset_index(drop=True))
