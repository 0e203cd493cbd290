"""Budget forcing: one long thinking run serves every budget exactly as separate runs would.

A scripted backend (deterministic in context and seed, stopping often, emitting multi-token
stop strings) checks the cut logic against the reference way exhaustively; the tiny model
checks the same equivalence on vLLM with greedy decoding, and the transformers backend's
agreement on structure.
"""

from __future__ import annotations

import hashlib

import pytest

from pipeline import templates
from pipeline.generation import budget_forcing as bf


class ScriptedBackend:
    """Next token = f(seed, step, last tokens): like a seeded sampler, a run and any longer run
    from the same prompt share their tokens. Emits stop ids, EOS and whole stop strings."""

    name, version, max_model_len = "scripted", "0", 4096

    def __init__(self, bound: templates.Bound, stop_every: int = 9):
        self.bound = bound
        self.stop_every = stop_every

    def _next(self, context, seed, step, request: bf.Gen) -> int:
        for stop in request.stop_strings:
            seq = self.bound.encode(stop)
            for n in range(len(seq) - 1, 0, -1):  # finish a stop string once begun
                if list(context[-n:]) == seq[:n]:
                    return seq[n]
        r = int.from_bytes(hashlib.sha256(f"{seed}:{step}:{context[-3:]}".encode()).digest()[:4], "little")
        if r % self.stop_every == 0:
            stops = list(request.stop_ids) + [self.bound.encode(s)[0] for s in request.stop_strings]
            return stops[(r // self.stop_every) % len(stops)]
        return 20 + r % 200

    def generate(self, requests):
        outs = []
        for request in requests:
            context, ids = list(request.prompt_ids), []
            for step in range(request.max_tokens):
                token = self._next(context, request.seed, step, request)
                ids.append(token)
                context.append(token)
                if token in request.stop_ids or any(s in self.bound.decode(ids) for s in request.stop_strings):
                    outs.append(bf.Out(ids, True))
                    break
            else:
                outs.append(bf.Out(ids, False))
        return outs


GENERIC = {"think_start": "<reason>", "think_end": "</reason>", "answer_start": "</reason>Answer:",
           "forced_answer": "</reason>Final Answer:"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def make_bound(tokenizer, tiny_model, name="qwen3"):
    return templates.bind(templates.get(name, GENERIC if name == "generic" else None), tokenizer, tiny_model, "Wait")


def make_requests(bound, n=6, seeds=(7,), samples=1):
    return [
        bf.Request(problem_id=f"p{p}", seed=seed, sample=s, sample_seed=bf.sample_seed(seed, f"p{p}", s),
                   prompt_ids=tuple(bound.prompt_ids(f"Problem {p}: compute {p} + {p}.")), gold=str(2 * p),
                   choice_order=None)
        for seed in seeds for p in range(n) for s in range(samples)
    ]


def _key(row):
    return (row["problem_id"], row["seed"], row["sample"], row["budget"])


PLAN_FIELDS = ("thinking_ids", "answer_ids", "hit_budget", "waits", "think_finish", "answer_finish", "thinking_tokens")


@pytest.mark.parametrize("template", ["qwen3", "s1", "generic"])
@pytest.mark.parametrize("wait_times", [0, 1, 3])
def test_one_long_run_equals_one_run_per_budget(tokenizer, tiny_model, template, wait_times):
    bound = make_bound(tokenizer, tiny_model, template)
    backend = ScriptedBackend(bound)
    requests = make_requests(bound, n=12, samples=2)
    budgets = [3, 5, 8, 13, 21, 34]
    quiet = bf.Tally(quiet=True)
    ours = {_key(r): r for r in bf.run(backend, bound, requests, budgets, 6, wait_times, quiet)}
    reference = {_key(r): r for r in bf.run_per_budget(backend, bound, requests, budgets, 6, wait_times, quiet)}
    assert ours.keys() == reference.keys()
    for key in ours:
        assert {f: ours[key][f] for f in PLAN_FIELDS} == {f: reference[key][f] for f in PLAN_FIELDS}, key
    # the scripted model exercises every branch: natural ends, budget hits, Wait rounds
    finishes = {r["think_finish"] for r in ours.values()}
    assert {"budget", "think_end"} <= finishes
    if wait_times:
        assert any(r["waits"] > 0 for r in ours.values())


def test_structure_of_rows(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model)
    requests = make_requests(bound, n=10)
    tally = bf.Tally(quiet=True)
    rows = bf.run(ScriptedBackend(bound), bound, requests, [4, 16, 64], 5, 2, tally)
    assert len(rows) == len(requests) * 3
    wait = bound.decode(bound.wait_ids)
    for row in rows:
        assert row["thinking_tokens"] == len(row["thinking_ids"]) <= row["budget"]
        assert row["hit_budget"] == (row["think_finish"] == "budget")
        if row["hit_budget"]:
            assert row["thinking_tokens"] == row["budget"]
            assert row["answer_prefix"] == bound.decode(bound.forced_answer_ids)
        else:
            assert row["answer_prefix"] == "</think>\n\n"
            assert row["thinking_ids"][-1:] != [bound.think_end_id]  # stripped
        assert row["thinking"].count(wait) >= row["waits"]
        assert row["waits"] <= 2 and row["answer_tokens"] <= 5
    # thinking was generated once at the largest budget (plus Wait rounds), not per budget
    assert tally.phases["thinking (budget 64, round 0)"] <= 64 * len(requests)
    assert not any("budget 4" in phase or "budget 16" in phase for phase in tally.phases)


def test_budgets_with_the_same_cut_share_one_answer(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model)
    requests = make_requests(bound, n=10)
    tally = bf.Tally(quiet=True)
    rows = bf.run(ScriptedBackend(bound, stop_every=3), bound, requests, [30, 40, 50], 4, 0, tally)
    natural = [r for r in rows if not r["hit_budget"]]
    assert natural  # stops every ~3 tokens: thinking ends before 30
    answers = sum(n for phase, n in tally.phases.items() if phase.startswith("answers"))
    distinct = {(r["problem_id"], tuple(r["thinking_ids"]), r["hit_budget"]) for r in rows}
    assert answers <= 4 * len(distinct) < 4 * len(rows)


def test_sample_seeds_are_distinct_and_stable():
    seeds = {bf.sample_seed(seed, "p1", s) for seed in (7, 8) for s in range(16)}
    assert len(seeds) == 32  # seeds 7 and 8 share no sample (vLLM's n would: s, s+1, ...)
    assert bf.sample_seed(7, "p1", 3) == bf.sample_seed(7, "p1", 3) != bf.sample_seed(7, "p2", 3)
    assert bf.derive_seed("think", 5, 0) != bf.derive_seed("think", 5, 1)


def test_lengths_are_checked_before_generation(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model)
    requests = make_requests(bound, n=2)
    with pytest.raises(bf.LengthError, match="generation.answer_max_tokens"):
        bf.check_lengths(requests, bound, [64, 512], 600, 1024)
    with pytest.raises(bf.LengthError, match="generation.vllm.max_model_len"):
        bf.check_lengths(requests, bound, [1000], 4, 1024)
    bf.check_lengths(requests, bound, [512], 400, 1024)


def test_cut_refuses_a_larger_budget():
    with pytest.raises(ValueError, match="larger budget"):
        bf.cut(bf.Thinking(ids=[1, 2], stops=[], budget=2), 4, 1, 0)


# --------------------------------------------------------------------------- real engines


def _greedy_backends(vllm_engine, tiny_model):
    from pipeline.generation.hf_backend import HfBackend
    from pipeline.generation.vllm_backend import VllmBackend

    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    return VllmBackend(vllm_engine, greedy), HfBackend(tiny_model, "float32", greedy, 1024)


@pytest.mark.vllm
def test_vllm_shared_run_matches_per_budget_runs_greedy(tokenizer, tiny_model, vllm_engine):
    from pipeline.generation.vllm_backend import VllmBackend

    bound = make_bound(tokenizer, tiny_model)
    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    backend = VllmBackend(vllm_engine, greedy)
    requests = make_requests(bound, n=4)
    budgets = [4, 8, 16, 32]
    ours = {_key(r): r for r in bf.run(backend, bound, requests, budgets, 6, 1, bf.Tally(quiet=True))}
    reference = {_key(r): r for r in bf.run_per_budget(backend, bound, requests, budgets, 6, 1, bf.Tally(quiet=True))}
    for key in reference:
        assert {f: ours[key][f] for f in PLAN_FIELDS} == {f: reference[key][f] for f in PLAN_FIELDS}, key


@pytest.mark.vllm
def test_vllm_seeded_sampling_is_repeatable_and_samples_differ(tokenizer, tiny_model, vllm_engine):
    from pipeline.generation.vllm_backend import VllmBackend

    bound = make_bound(tokenizer, tiny_model)
    backend = VllmBackend(vllm_engine, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0})
    requests = make_requests(bound, n=2, seeds=(7, 8), samples=2)
    first = bf.think(backend, bound, requests, 12, 0, bf.Tally(quiet=True))
    second = bf.think(backend, bound, requests[::-1], 12, 0, bf.Tally(quiet=True))[::-1]
    assert [t.ids for t in first] == [t.ids for t in second]  # per-request seeds, any batch order
    assert len({tuple(t.ids) for t in first}) == len(requests)


@pytest.mark.vllm
@pytest.mark.parametrize("template", ["qwen3", "generic"])  # think_end as a stop id / a stop string
def test_vllm_and_transformers_agree_on_structure(tokenizer, tiny_model, vllm_engine, template):
    bound = make_bound(tokenizer, tiny_model, template)
    requests = make_requests(bound, n=3)
    budgets = [4, 8, 16]
    plans = []
    for backend in _greedy_backends(vllm_engine, tiny_model):
        rows = bf.run(backend, bound, requests, budgets, 4, 1, bf.Tally(quiet=True))
        for row in rows:
            assert row["thinking_tokens"] <= row["budget"] and row["answer_tokens"] <= 4
            assert row["answer_prefix"] == bound.decode(bound.answer_ids(forced=row["hit_budget"]))
        plans.append([(_key(r), r["hit_budget"], r["thinking_tokens"], r["waits"]) for r in rows])
    assert plans[0] == plans[1]
