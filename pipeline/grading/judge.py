"""A judge's second opinion on graded answers, from an OpenAI-compatible chat endpoint.

The judge sees the gold answer and the answer segment the deterministic grader read, and says
CORRECT or INCORRECT (as paper A's harness sent non-integer answers to gpt-4o-mini). Which rows
it grades: scope `unsettled` (what the deterministic grader cannot settle: any status other than
correct or wrong, or a gold answer that is not an integer) or `all`. The judge stage
(pipeline.stages.judge) runs it; the preflight checks its key and endpoint.

Verdicts are cached in OUT.verdicts.jsonl, one line per finished verdict, written and synced
as each reply arrives: a killed run loses none, and a rerun asks only for what is missing.
Requests are rate-limited (requests_per_minute) and retried with backoff on connection errors,
timeouts, 429 and 5xx; once retries are spent the stage stops, naming the endpoint.
With `local_model` the stage serves that model with vLLM's OpenAI-compatible server on
127.0.0.1 for its own run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

PROMPT = (
    "You grade answers to math and science problems. The reference answer is:\n{gold}\n\n"
    "The end of a student's response is:\n{answer}\n\n"
    "Is the student's final answer equivalent to the reference answer? Reply with one word: "
    "CORRECT or INCORRECT."
)
ANSWER_CHARS = 2000  # the end of the answer segment: where the final answer is
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class JudgeError(RuntimeError):
    """The judge cannot be reached or refuses; worded for the user."""


def log(message: str) -> None:
    print(f"[judge] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configuration


def api_key(judge: dict) -> str | None:
    """The key named by grading.judge.api_key_env (none for a local model or when unset)."""
    name = judge.get("api_key_env")
    if judge.get("local_model") or not name:
        return None
    return os.environ.get(name)


def preflight_problems(config: dict, timeout_s: float = 5.0) -> list[str]:
    """What stops the judge before any job: a missing API key (naming its variable), an
    unreachable endpoint. Empty when the judge is off or serves a local model."""
    judge = config.get("grading", {}).get("judge", {})
    if not judge.get("enabled"):
        return []
    if judge.get("local_model"):
        folder = Path(judge["local_model"]).expanduser()
        if not (folder / "config.json").exists():
            return [f"grading.judge.local_model: {folder} holds no config.json; point it at a model folder"]
        return []
    found = []
    name = judge.get("api_key_env")
    if name and not os.environ.get(name):
        found.append(f"grading.judge.api_key_env: the environment variable {name} is not set; export {name}=<key> "
                     "for the judge's endpoint, or set grading.judge.api_key_env: null for one without a key")
    problem = endpoint_problem(judge["endpoint"], timeout_s)
    if problem:
        found.append(f"grading.judge.endpoint: {problem}; fix the URL, start the server, or set "
                     "grading.judge.enabled: false")
    return found


def endpoint_problem(endpoint: str, timeout_s: float) -> str | None:
    """None when something answers HTTP at the endpoint (any status: a 401 is an answer)."""
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint.rstrip('/')}/models"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"{endpoint} cannot be reached ({getattr(error, 'reason', error)})"
    return None


# --------------------------------------------------------------------------- which rows


def _integer(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+(\.0+)?", str(text).strip().replace(",", "")) is not None


def to_ask(grades: pd.DataFrame, scope: str) -> pd.Series:
    if scope == "all":
        return pd.Series(True, index=grades.index)
    settled = grades["status"].isin(["correct", "wrong"]) & grades["gold"].map(_integer)
    return ~settled


def prompt_for(gold: str, segment: str) -> str:
    return PROMPT.format(gold=gold, answer=segment[-ANSWER_CHARS:])


def verdict_of(reply: str) -> str:
    word = re.match(r"\W*([A-Za-z]+)", reply or "")
    word = word.group(1).upper() if word else ""
    return {"CORRECT": "correct", "INCORRECT": "wrong"}.get(word, "unclear")


# --------------------------------------------------------------------------- cache


class Cache:
    """Finished verdicts, one JSON line each, appended and synced as they arrive."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, str] = {}
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # a line cut short by a kill: drop it
                data = data[:data.rfind(b"\n") + 1]
                os.truncate(path, len(data))
            for line in data.decode().splitlines():
                entry = json.loads(line)
                self.done[entry["key"]] = entry["reply"]
        self.lock = threading.Lock()

    def add(self, key: str, reply: str) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"key": key, "reply": reply}) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.done[key] = reply


def cache_key(model: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([model, prompt]).encode()).hexdigest()


# --------------------------------------------------------------------------- requests


class Client:
    """Chat completions with a shared rate limit and retries."""

    def __init__(self, endpoint: str, model: str, key: str | None, judge: dict):
        self.url = f"{endpoint.rstrip('/')}/chat/completions"
        self.endpoint, self.model, self.key = endpoint, model, key
        self.interval = 60.0 / judge["requests_per_minute"]
        self.retries, self.timeout_s, self.max_tokens = judge["retries"], judge["timeout_s"], judge["max_tokens"]
        self.backoff_s = judge.get("backoff_s", 1.0)
        self.next_start = 0.0
        self.lock = threading.Lock()

    def _wait_turn(self) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        time.sleep(max(0.0, start - now))

    def ask(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 30.0))
            self._wait_turn()
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                if error.code not in RETRY_STATUS:
                    detail = error.read()[:300].decode(errors="replace")
                    hint = " (check the key in grading.judge.api_key_env)" if error.code in (401, 403) else ""
                    raise JudgeError(f"judge endpoint {self.endpoint} refused with HTTP {error.code}{hint}: {detail}")
                last = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
                last = str(getattr(error, "reason", error))
        raise JudgeError(f"judge endpoint {self.endpoint} failed {self.retries + 1} times (last: {last}); finished "
                         "verdicts are kept, rerun to resume")


def judge_rows(items: dict[str, str], client: Client, cache: Cache, concurrency: int) -> None:
    """Ask for every prompt not in the cache; each reply is cached as it arrives."""
    missing = [(key, prompt) for key, prompt in items.items() if key not in cache.done]
    log(f"{len(items)} prompts, {len(items) - len(missing)} cached, {len(missing)} to ask at {client.url}")
    failure: list[JudgeError] = []

    def one(entry):
        if failure:
            return
        key, prompt = entry
        try:
            cache.add(key, client.ask(prompt))
        except JudgeError as error:
            failure.append(error)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, missing))
    if failure:
        raise failure[0]


# --------------------------------------------------------------------------- local server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_local(model_dir: str, max_model_len: int, log_path: Path, startup_s: float = 600.0):
    """Start vLLM's OpenAI-compatible server on 127.0.0.1; returns (process, endpoint)."""
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", "judge", "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(max_model_len), "--enforce-eager"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # its own session: stopping it stops the engine process it spawns too
    process = subprocess.Popen(command, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise JudgeError(f"the local judge server on {model_dir} exited with {process.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"{endpoint}/models", timeout=2).close()
            return process, endpoint
        except (urllib.error.URLError, OSError):
            time.sleep(1.0)
    stop_local(process)
    raise JudgeError(f"the local judge server on {model_dir} did not answer within {startup_s:.0f} s; see {log_path}")


def stop_local(process, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=120)
