"""The judge stage: which rows it asks, its cache, retries and preflight, then real HTTP against
vLLM's own OpenAI-compatible server on the tiny model, killed mid-run and resumed."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.artifacts import read_table, write_table
from pipeline.grading import judge
from pipeline.stages import judge as judge_stage
from pipeline.grading.answers import KEYS

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(tmp_path, n: int) -> tuple[Path, Path]:
    rows = []
    for i in range(n):
        key = {"model": "tiny", "variant": "dense", "benchmark": "mix", "problem_id": f"p{i}", "seed": 7,
               "sample": 0, "sample_seed": 1, "budget": 8, "wait_times": 0}
        gold = str(i) if i % 3 else f"\\frac{{{i}}}{{7}}"
        status = ["correct", "wrong", "no_answer"][i % 3]
        rows.append({**key, "gold": gold, "extracted": gold if status == "correct" else "1",
                     "status": status, "correct": status == "correct",
                     "answer_prefix": "\n<|im_start|>answer\nFinal Answer:", "answer": f" The answer is {gold}."})
    table = pd.DataFrame(rows)
    grades, generations = tmp_path / "grades.parquet", tmp_path / "generations.parquet"
    write_table(table[KEYS + ["gold", "extracted", "status", "correct"]], grades)
    write_table(table[KEYS + ["answer_prefix", "answer"]], generations)
    return grades, generations


def spec(endpoint: str, **judge_settings) -> dict:
    settings = {"enabled": True, "scope": "all", "endpoint": endpoint, "model": "judge", "api_key_env": None,
                "local_model": None, "local_max_model_len": 1024, "requests_per_minute": 6000, "retries": 2,
                "backoff_s": 0.2, "timeout_s": 30, "max_tokens": 4, "concurrency": 2}
    return {"benchmark": "mix", "judge": {**settings, **judge_settings}}


# --------------------------------------------------------------------------- no server


def test_rows_asked_by_scope(tmp_path):
    grades, _ = make_inputs(tmp_path, 9)
    table = read_table(grades)
    unsettled = judge.to_ask(table, "unsettled")
    # settled: correct or wrong against an integer gold; the rest (no answer, a fraction) is asked
    assert unsettled.tolist() == [True, False, True, True, False, True, True, False, True]
    assert judge.to_ask(table, "all").all()


def test_verdicts_are_read_from_the_first_word():
    assert judge.verdict_of("CORRECT") == "correct"
    assert judge.verdict_of(" incorrect.") == "wrong"
    assert judge.verdict_of("**Correct**, because") == "correct"
    assert judge.verdict_of("The answer is correct") == "unclear"
    assert judge.verdict_of("") == "unclear"


def test_cache_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "v.jsonl"
    cache = judge.Cache(path)
    cache.add("a", "CORRECT")
    with open(path, "a") as handle:
        handle.write('{"key": "b", "rep')  # killed mid-write
    cache = judge.Cache(path)
    assert cache.done == {"a": "CORRECT"}
    cache.add("c", "INCORRECT")
    assert judge.Cache(path).done == {"a": "CORRECT", "c": "INCORRECT"}


class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503, then 429, then a completion: the client must retry through both."""

    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= 2:
            self.send_response(503 if type(self).calls == 1 else 429)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"message": {"content": "CORRECT"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_and_gives_up_naming_the_endpoint():
    server = http.server.HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        client = judge.Client(endpoint, "judge", None, spec(endpoint)["judge"])
        assert client.ask("?") == "CORRECT" and Flaky.calls == 3
    finally:
        server.shutdown()
        server.server_close()  # refused from now on, not accepted and left unanswered until timeout_s
    gone = judge.Client(endpoint, "judge", None, spec(endpoint, retries=1)["judge"])
    with pytest.raises(judge.JudgeError, match=f"{endpoint} failed 2 times"):
        gone.ask("?")


def test_preflight_names_the_missing_key_and_the_unreachable_endpoint(monkeypatch):
    monkeypatch.delenv("PRUNE_TTS_TEST_JUDGE_KEY", raising=False)
    endpoint = f"http://127.0.0.1:{judge.free_port()}/v1"
    config = {"grading": {"judge": spec(endpoint, api_key_env="PRUNE_TTS_TEST_JUDGE_KEY")["judge"]}}
    found = judge.preflight_problems(config, timeout_s=2)
    assert len(found) == 2
    assert "PRUNE_TTS_TEST_JUDGE_KEY is not set" in found[0] and "grading.judge.api_key_env" in found[0]
    assert f"{endpoint} cannot be reached" in found[1] and "grading.judge.endpoint" in found[1]
    config["grading"]["judge"]["enabled"] = False
    assert judge.preflight_problems(config) == []


# --------------------------------------------------------------------------- vLLM's server


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """vLLM's OpenAI-compatible server on the tiny model, started as the stage starts it."""
    holder = {}

    def start():
        holder["process"], holder["endpoint"] = judge.serve_local(
            tiny_model, 1024, tmp_path_factory.mktemp("server") / "server.log", startup_s=600)
        return holder["endpoint"]

    start()
    holder["restart"] = start
    yield holder
    judge.stop_local(holder["process"])


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.vllm
def test_judge_over_http_cached_and_resumed(tmp_path, server, capfd):
    grades, generations = make_inputs(tmp_path, 9)
    out = tmp_path / "judged.parquet"
    first = judge_stage.run(spec(server["endpoint"]), grades, generations, out)
    assert len(first) == 9 and first["judge_status"].isin(["correct", "wrong", "unclear"]).all()
    assert first["judge_reply"].map(lambda r: isinstance(r, str)).all()
    # beside the deterministic verdicts, never replacing them
    assert first["status"].tolist() == read_table(grades)["status"].tolist()
    assert _lines(Path(f"{out}.verdicts.jsonl")) == 9
    capfd.readouterr()
    again = judge_stage.run(spec(server["endpoint"]), grades, generations, out)
    assert "9 cached, 0 to ask" in capfd.readouterr().err
    pd.testing.assert_frame_equal(again, first)
    unsettled = judge_stage.run(spec(server["endpoint"], scope="unsettled"), grades, generations, tmp_path / "u.parquet")
    assert unsettled["judge_status"].eq("not_asked").tolist() == (~judge.to_ask(unsettled, "unsettled")).tolist()
    assert unsettled["judge_correct"].isna()[unsettled["judge_status"] == "not_asked"].all()


@pytest.mark.vllm
def test_server_killed_mid_run_loses_no_verdict(tmp_path, server):
    grades, generations = make_inputs(tmp_path, 40)
    out = tmp_path / "judged.parquet"
    cache = Path(f"{out}.verdicts.jsonl")
    argv = [sys.executable, "-m", "pipeline.stages.judge", "--grades", str(grades), "--generations", str(generations),
            "--spec", json.dumps(spec(server["endpoint"], requests_per_minute=300, concurrency=1)), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _lines(cache) < 3 and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    judge.stop_local(server["process"], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 2 and f"judge endpoint {server['endpoint']} failed" in err, err
    assert not out.exists()
    kept = judge.Cache(cache).done
    assert 3 <= len(kept) < 40

    endpoint = server["restart"]()
    argv[argv.index("--spec") + 1] = json.dumps(spec(endpoint))
    resumed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"40 prompts, {len(kept)} cached, {40 - len(kept)} to ask" in resumed.stderr
    table = read_table(out)
    assert table["judge_reply"].notna().all()
    after = judge.Cache(cache).done
    assert len(after) == 40 and all(after[key] == reply for key, reply in kept.items())


# --------------------------------------------------------------------------- the table


def test_table_gains_judge_accuracy_and_agreement():
    from pipeline.stages.aggregate import main_table

    spec = {"models": ["tiny"], "variants": {"dense": {"method": "dense"}}, "benchmarks": ["a", "b"],
            "budgets": [8], "seeds": [7, 11], "bootstrap": 50, "confidence": 0.95}
    grades, judged = [], []
    for benchmark in ("a", "b"):
        for seed in (7, 11):
            for p in range(4):
                key = {"model": "tiny", "variant": "dense", "benchmark": benchmark, "problem_id": f"p{p}",
                       "seed": seed, "sample": 0, "sample_seed": 0, "budget": 8, "wait_times": 0}
                correct = p < 2
                grades.append({**key, "gold": "1", "extracted": "1", "status": "correct" if correct else "wrong",
                               "correct": correct, "thinking_tokens": 4, "answer_tokens": 2, "hit_budget": False})
                # on a, the judge is asked about p2 and p3 and calls p3 correct; on b it is not asked
                verdict = ({2: "wrong", 3: "correct"}.get(p, "not_asked")) if benchmark == "a" else "not_asked"
                judged.append({**key, "correct": correct, "judge_status": verdict,
                               "judge_correct": {"correct": True, "wrong": False}.get(verdict)})
    grades, judged = pd.DataFrame(grades), pd.DataFrame(judged)
    judged["judge_correct"] = judged["judge_correct"].astype("boolean")
    table = main_table(grades, spec, judgements=judged).set_index("benchmark")
    assert table.loc["a", "accuracy"] == 0.5 and table.loc["a", "judge_accuracy"] == 0.75
    assert table.loc["a", "judge_asked"] == 4 and table.loc["a", "judge_agreement"] == 0.5
    assert table.loc["b", "judge_accuracy"] == table.loc["b", "accuracy"] == 0.5
    assert table.loc["b", "judge_asked"] == 0 and pd.isna(table.loc["b", "judge_agreement"])
    listed = judge_stage.disagreements(judged.assign(gold="1", extracted="1", status="x", judge_reply="r"))
    assert listed[["benchmark", "problem_id"]].drop_duplicates().values.tolist() == [["a", "p3"]]
    assert "judge_accuracy" not in main_table(grades, spec).columns
