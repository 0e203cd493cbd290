"""Test-time scaling generations of one model variant on one benchmark.

    python -m pipeline.stages.generate --model results/models/M/model.json (or a checkpoint folder) \\
        --benchmark results/data/B.parquet --spec JSON --out results/generations/M/V/B.parquet

One job covers every seed, parallel sample, budget and Wait setting with one engine start. Per
seed, thinking is generated once at the largest budget and Wait setting, and every budget's and
setting's answer is generated from it in one batch (pipeline/generation/budget_forcing.py).
Finished work is kept beside the output:

    OUT.shards/thinking-seed-S.parquet   thinking token ids at the largest budget, per Wait run
    OUT.shards/seed-S.parquet            the finished rows of seed S

A killed job, restarted, regenerates only unfinished seeds; a changed budget list, answer cap or
smaller Wait setting reuses the thinking (a smaller budget or setting costs only its answers).
Shards are keyed by the config slice, the model's files and the benchmark's content, so stale
ones are never reused; cached thinking serves only budgets and Wait settings it yields exactly.
The output's provenance holds `compute`: the model folder's weight counts and FLOPs per token,
its bytes and this job's generation throughput (docs/COMPUTE.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

from pipeline.core import config, slices
from pipeline.generation import templates
from pipeline.core.artifacts import read_provenance, read_table, spec_argument, write_table
from pipeline.core.specs import spec_hash
from pipeline.generation import check_backend, open_backend
from pipeline.generation import budget_forcing as bf
from pipeline.generation.requests import requests_for
from pipeline.models.models import model_dir as resolve_model_dir
from pipeline.reporting import compute


class GenerationError(RuntimeError):
    """A problem found before generation, worded for the user."""


# --------------------------------------------------------------------------- inputs


def find_model(model: str | Path) -> Path:
    hint = "rerun the base_model or export stage that writes it"
    if not Path(model).exists():
        raise GenerationError(f"model manifest or checkpoint folder {model} does not exist; {hint}")
    try:
        folder = resolve_model_dir(model)
    except (OSError, ValueError, KeyError) as error:
        raise GenerationError(f"cannot read the model manifest {model}: {error}") from error
    if not (folder / "config.json").exists():
        raise GenerationError(
            f"model folder {folder} (named by {model}) does not exist or holds no config.json; {hint}"
        )
    return folder


def files_fingerprint(folder: Path) -> str:
    """What identifies a model folder's weights. A pruned checkpoint carries the provenance of
    its masks (export is deterministic), so re-exporting it, say after a temporary checkpoint
    was removed, keeps the cached thinking; other folders: file names, sizes and mtimes."""
    record = folder / "prune_tts.json"
    if record.exists():
        return hashlib.sha256(record.read_bytes()).hexdigest()[:16]
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def table_fingerprint(table: pd.DataFrame) -> str:
    rows = table[["id", "problem", "answer"]].astype(str).to_csv(index=False)
    return hashlib.sha256(rows.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- shards


class Shards:
    """Per-seed finished rows and thinking caches beside the output, written atomically."""

    def __init__(self, out: Path, spec: dict, inputs: dict):
        self.folder = Path(f"{out}.shards")
        generation = {k: v for k, v in spec["generation"].items() if k != "seeds"}
        # answers depend on everything; thinking on everything but the budgets, the answer cap and
        # the Wait settings (the cache records its budget and settings, checked when it is read)
        self.rows_key = spec_hash({**spec, "generation": generation, "inputs": inputs})
        thinking = {k: v for k, v in generation.items() if k not in ("budgets", "answer_max_tokens")}
        thinking["wait"] = {k: v for k, v in generation["wait"].items() if k != "times"}
        self.thinking_key = spec_hash({**spec, "generation": thinking, "inputs": inputs})

    def rows_path(self, seed: int) -> Path:
        return self.folder / f"seed-{seed}.parquet"

    def thinking_path(self, seed: int) -> Path:
        return self.folder / f"thinking-seed-{seed}.parquet"

    @staticmethod
    def _matches(path: Path, key: str) -> dict | None:
        if not path.exists():
            return None
        try:
            info = read_provenance(path)
        except (OSError, ValueError):
            return None
        return info if info.get("shard_key") == key else None

    def load_rows(self, seed: int) -> pd.DataFrame | None:
        return read_table(self.rows_path(seed)) if self._matches(self.rows_path(seed), self.rows_key) else None

    def save_rows(self, seed: int, rows: pd.DataFrame, spec: dict) -> None:
        write_table(rows, self.rows_path(seed), spec=spec, seed=seed, shard_key=self.rows_key)

    def load_thinking(self, seed: int, budget: int, wait_times: list[int], rule: str,
                      requests: list[bf.Request]) -> dict[int, list[bf.Thinking]] | None:
        """The cached thinking runs of `requests` (by the Wait setting each was generated with) if
        they were generated under a budget >= `budget` and yield every setting of `wait_times`."""
        info = self._matches(self.thinking_path(seed), self.thinking_key)
        if info is None or info.get("budget", 0) < budget:
            return None
        table = read_table(self.thinking_path(seed))
        wanted = {(r.problem_id, r.sample) for r in requests}
        runs = {}
        for generated, part in table.groupby("wait_times"):
            by_key = {(r.problem_id, r.sample): r for r in part.itertuples()}
            if set(by_key) != wanted:
                return None
            runs[int(generated)] = [_thinking(by_key[(r.problem_id, r.sample)]) for r in requests]
        return runs if bf.sources(wait_times, runs, rule) is not None else None

    def save_thinking(self, seed: int, requests: list[bf.Request], runs: dict[int, list[bf.Thinking]],
                      spec: dict) -> None:
        pairs = [(r, t) for thinkings in runs.values() for r, t in zip(requests, thinkings)]
        table = pd.DataFrame({
            "problem_id": [r.problem_id for r, _ in pairs], "sample": [r.sample for r, _ in pairs],
            "sample_seed": [r.sample_seed for r, _ in pairs], "budget": [t.budget for _, t in pairs],
            "wait_times": [t.wait_times for _, t in pairs], "ids": [t.ids for _, t in pairs],
            "stop_kept": [[s.kept for s in t.stops] for _, t in pairs],
            "stop_tails": [[list(s.tail) for s in t.stops] for _, t in pairs],
            "stop_kinds": [[s.kind for s in t.stops] for _, t in pairs],
        })
        write_table(table, self.thinking_path(seed), spec=spec, seed=seed, shard_key=self.thinking_key,
                    budget=min(t.budget for _, t in pairs))


def _thinking(row) -> bf.Thinking:
    stops = [bf.Stop(int(k), tuple(int(t) for t in tail), str(kind))
             for k, tail, kind in zip(row.stop_kept, row.stop_tails, row.stop_kinds)]
    return bf.Thinking(ids=[int(t) for t in row.ids], stops=stops, budget=int(row.budget),
                       wait_times=int(row.wait_times))


# --------------------------------------------------------------------------- the job


def log(message: str) -> None:
    print(f"[generate] {message}", file=sys.stderr, flush=True)


def run(spec: dict, model: str | Path, benchmark: str | Path, out: str | Path, backend=None) -> pd.DataFrame:
    """Generate (or resume) the job and write `out`. `backend`: an open backend to use instead of
    starting the configured one (tests share one engine)."""
    generation = spec["generation"]
    budgets = sorted(generation["budgets"])
    folder = find_model(model)
    template = templates.get(spec["template"], spec.get("delimiters"))
    from transformers import AutoTokenizer

    bound = templates.bind(template, AutoTokenizer.from_pretrained(folder), folder, generation["wait"]["string"])
    table = read_table(benchmark)
    if table.empty:
        raise GenerationError(f"benchmark table {benchmark} has no problems")
    requests = {seed: requests_for(table, bound, seed, generation["samples"]) for seed in generation["seeds"]}
    max_model_len = generation["vllm"]["max_model_len"]
    if backend is not None:
        max_model_len = min(max_model_len, backend.max_model_len)
    wait_times, rule = slices.wait_settings(generation["wait"]["times"]), generation.get("wait_rule", "project")
    bf.check_lengths([r for rs in requests.values() for r in rs], bound, budgets, generation["answer_max_tokens"],
                     max_model_len, max(wait_times), rule)
    if backend is None:
        check_backend(spec)

    shards = Shards(Path(out), spec, {"model": files_fingerprint(folder), "benchmark": table_fingerprint(table)})
    tally = bf.Tally()
    frames = []
    for seed, seed_requests in requests.items():
        rows = shards.load_rows(seed)
        if rows is not None:
            log(f"seed {seed}: finished shard {shards.rows_path(seed)} reused")
            frames.append(rows)
            continue
        if backend is None:
            log(f"starting the {generation['backend']} backend on {folder}")
            backend = open_backend(spec, folder)
        runs = shards.load_thinking(seed, budgets[-1], wait_times, rule, seed_requests)
        if runs is None:
            runs = bf.think_runs(backend, bound, seed_requests, budgets[-1], wait_times, tally, label=f"seed {seed} ",
                                 rule=rule)
            shards.save_thinking(seed, seed_requests, runs, spec)
        else:
            budget = min(thinking[0].budget for thinking in runs.values())
            log(f"seed {seed}: cached thinking (budget {budget}) reused; generating answers only")
        answers = bf.answer(backend, bound, seed_requests, runs, budgets, generation["answer_max_tokens"],
                            wait_times, tally, label=f"seed {seed} ", rule=rule)
        rows = _table(answers, spec, bound, backend)
        shards.save_rows(seed, rows, spec)
        frames.append(rows)
    result = pd.concat(frames, ignore_index=True)
    # what one token costs and how fast this job generated (engine start apart), read now: a
    # temporary checkpoint is gone once the jobs that read it finish (docs/COMPUTE.md)
    facts = {"generated_tokens": tally.tokens, "generation_seconds": tally.seconds}
    try:
        facts.update(compute.checkpoint_facts(folder))
    except FileNotFoundError as error:  # weights not in safetensors: the tables leave the FLOPs empty
        log(f"no compute facts: {error}")
    write_table(result, out, spec=spec, engine_version=result["engine_version"].iloc[0], compute=facts)
    log(f"wrote {len(result)} rows to {out} ({tally.tokens} tokens generated in {tally.seconds:.1f} s)")
    return result


def _table(answers: list[dict], spec: dict, bound: templates.Bound, backend) -> pd.DataFrame:
    """The generations table: the plan's rows plus what identifies how they were made."""
    sampling = spec["sampling"]
    generation = spec["generation"]
    delimiters = json.dumps({**bound.template.delimiters(), "wait": generation["wait"]["string"],
                             "wait_rule": generation.get("wait_rule", "project")})
    rows = pd.DataFrame(answers).drop(columns=["thinking_ids", "answer_ids"])
    return rows.assign(
        model=spec["model"], variant=spec["variant"], benchmark=spec["benchmark"], template=bound.template.name,
        backend=backend.name, engine_version=backend.version, temperature=float(sampling["temperature"]),
        top_p=float(sampling["top_p"]), top_k=int(sampling["top_k"]), min_p=float(sampling["min_p"]),
        delimiters=delimiters,
    )[COLUMNS]


COLUMNS = [
    "model", "variant", "benchmark", "problem_id", "seed", "sample", "sample_seed", "budget", "wait_times", "gold",
    "choice_order", "prompt_tokens", "thinking", "answer_prefix", "answer", "thinking_tokens", "answer_tokens",
    "hit_budget", "waits", "think_finish", "answer_finish", "template", "backend", "engine_version", "temperature",
    "top_p", "top_k", "min_p", "delimiters",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest (model.json) or checkpoint folder")
    parser.add_argument("--benchmark", required=True, help="benchmark table (Parquet: id, problem, answer, choices)")
    parser.add_argument("--spec", required=True, help="the generation config slice: JSON or @file")
    parser.add_argument("--out", required=True, help="output Parquet")
    args = parser.parse_args(argv)
    config.or_exit(config.check_stage, "generate", spec_argument(args.spec))  # before loading
    from pipeline.generation.vllm_backend import EngineError

    try:
        run(spec_argument(args.spec), args.model, args.benchmark, args.out)
    except (GenerationError, templates.TemplateError, bf.LengthError, EngineError) as error:
        print(f"generate: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
