"""Budget forcing: one long thinking run serves every budget exactly as separate runs would.

A scripted backend (deterministic in context and seed, stopping often, emitting multi-token
stop strings) checks the cut logic against the reference way exhaustively; the tiny model
checks the same equivalence on vLLM with greedy decoding, and the transformers backend's
agreement on structure.
"""

from __future__ import annotations

import hashlib

import pytest

from pipeline.generation import budget_forcing as bf
from pipeline.generation import templates


class ScriptedBackend:
    """Next token = f(seed, step, last tokens): like a seeded sampler, a run and any longer run
    from the same prompt share their tokens. Emits stop ids, EOS and whole stop strings, never a
    stop id before min_tokens, and a newline every `newline_every` tokens or so."""

    name, version, max_model_len = "scripted", "0", 4096

    def __init__(self, bound: templates.Bound, stop_every: int = 9, newline_every: int | None = None):
        self.bound = bound
        self.stop_every = stop_every
        self.newline_every = newline_every

    def _next(self, context, seed, step, request: bf.Gen) -> int:
        for stop in request.stop_strings:
            seq = self.bound.encode(stop)
            for n in range(len(seq) - 1, 0, -1):  # finish a stop string once begun
                if list(context[-n:]) == seq[:n]:
                    return seq[n]
        r = int.from_bytes(hashlib.sha256(f"{seed}:{step}:{context[-3:]}".encode()).digest()[:4], "little")
        if r % self.stop_every == 0 and step >= request.min_tokens:
            stops = list(request.stop_ids) + [self.bound.encode(s)[0] for s in request.stop_strings]
            return stops[(r // self.stop_every) % len(stops)]
        if self.newline_every and r % self.newline_every == 1:
            return self.bound.encode("\n")[0]
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
    return (row["problem_id"], row["seed"], row["sample"], row["budget"], row["wait_times"])


PLAN_FIELDS = ("thinking_ids", "answer_ids", "hit_budget", "waits", "think_finish", "answer_finish", "thinking_tokens")


@pytest.mark.parametrize("rule", ["project", "s1"])
@pytest.mark.parametrize("template", ["qwen3", "s1", "generic"])
@pytest.mark.parametrize("wait_times", [0, 1, 3])
def test_one_long_run_equals_one_run_per_budget(tokenizer, tiny_model, template, wait_times, rule):
    bound = make_bound(tokenizer, tiny_model, template)
    if rule == "s1" and template == "generic" and wait_times:
        pytest.skip("s1's harness stops Wait rounds on single-token delimiters only (tested below)")
    backend = ScriptedBackend(bound, newline_every=5 if rule == "s1" else None)
    requests = make_requests(bound, n=12, samples=2)
    budgets = [3, 5, 8, 13, 21, 34]
    quiet = bf.Tally(quiet=True)
    ours = {_key(r): r for r in bf.run(backend, bound, requests, budgets, 6, [wait_times], quiet, rule=rule)}
    reference = {_key(r): r for r in bf.run_per_budget(backend, bound, requests, budgets, 6, [wait_times], quiet,
                                                       rule=rule)}
    assert ours.keys() == reference.keys()
    for key in ours:
        assert {f: ours[key][f] for f in PLAN_FIELDS + ("answer_prefix",)} == \
            {f: reference[key][f] for f in PLAN_FIELDS + ("answer_prefix",)}, key
    # the scripted model exercises every branch: natural ends, budget hits, Wait rounds
    finishes = {r["think_finish"] for r in ours.values()}
    assert {"budget", "think_end"} <= finishes
    if wait_times:
        assert any(r["waits"] > 0 for r in ours.values())


class Counting:
    """A backend that counts the thinking runs (first-round requests) and answer requests of
    `requests` before passing them on."""

    name, version = "counting", "0"

    def __init__(self, backend, requests):
        self.backend, self.max_model_len = backend, backend.max_model_len
        self.first_round = {bf.derive_seed("think", r.sample_seed, 0) for r in requests}
        self.answer = {bf.derive_seed("answer", r.sample_seed) for r in requests}
        self.runs = self.answers = 0

    def generate(self, gens):
        self.runs += sum(g.seed in self.first_round for g in gens)
        self.answers += sum(g.seed in self.answer for g in gens)
        return self.backend.generate(gens)


WAIT_SETTINGS = [0, 1, 2]


@pytest.mark.parametrize("rule,template", [("project", "qwen3"), ("project", "generic"), ("s1", "s1"), ("s1", "qwen3")])
def test_wait_settings_from_one_run_equal_separate_runs(tokenizer, tiny_model, rule, template):
    """Every Wait setting and budget derived from the largest setting's run (under s1's rule, plus
    a run for setting 0) equals a separate run with that setting and budget."""
    bound = make_bound(tokenizer, tiny_model, template)
    scripted = ScriptedBackend(bound, stop_every=6, newline_every=5 if rule == "s1" else None)
    requests = make_requests(bound, n=16, samples=2)
    budgets = [2, 3, 5, 8, 13, 21]
    quiet = bf.Tally(quiet=True)
    backend = Counting(scripted, requests)
    rows = bf.run(backend, bound, requests, budgets, 5, WAIT_SETTINGS, quiet, rule=rule)
    assert backend.runs == len(requests) * (2 if rule == "s1" else 1)  # one thinking run (s1: and one for 0)
    ours = {_key(r): r for r in rows}
    reference = {_key(r): r for r in bf.run_per_budget(scripted, bound, requests, budgets, 5, WAIT_SETTINGS, quiet,
                                                       rule=rule)}
    assert len(ours) == len(rows) == len(requests) * len(budgets) * len(WAIT_SETTINGS)
    assert ours.keys() == reference.keys()
    for key in ours:
        assert {f: ours[key][f] for f in PLAN_FIELDS + ("answer_prefix",)} == \
            {f: reference[key][f] for f in PLAN_FIELDS + ("answer_prefix",)}, key
    # identical answer prompts share one answer, across budgets and settings alike
    prefixes = {bound.decode(ids): tuple(ids) for ids in (bound.answer_start_ids, bound.forced_answer_ids,
                                                          bf.forced_after_newline_ids(bound))}
    distinct = {(r["problem_id"], r["sample"], tuple(r["thinking_ids"]) + prefixes[r["answer_prefix"]]) for r in rows}
    assert backend.answers == len(distinct) < len(rows)
    wait = len(bound.wait_ids)
    assert all(r["waits"] <= r["wait_times"] for r in rows)
    assert all(r["waits"] == 0 for r in rows if r["wait_times"] == 0)
    if rule == "project":  # a Wait inserted where it fits, withheld where it does not
        fits = [r for r in rows if r["wait_times"] and r["waits"] and not r["hit_budget"]]
        withheld = [r for r in rows if not r["hit_budget"] and r["waits"] < r["wait_times"]
                    and r["thinking_tokens"] + wait >= r["budget"]]
        assert fits and withheld
    # the settings differ: more Waits change some rows
    by_setting = {w: [ours[k[:4] + (w,)]["thinking_ids"] for k in sorted(ours) if k[4] == 0] for w in WAIT_SETTINGS}
    assert by_setting[0] != by_setting[1] != by_setting[2]


def test_a_cut_never_adds_waits_the_run_did_not_allow():
    thinking = bf.Thinking(ids=[1, 2, 3], stops=[bf.Stop(2, (9,), "think_end")], budget=8, wait_times=0)
    with pytest.raises(ValueError, match="wait times 0 to wait times 1"):
        bf.cut(thinking, 8, 1, 1)
    assert bf.derivable(2, 1, "project") and bf.derivable(2, 0, "project") and not bf.derivable(1, 2, "project")
    # s1's rule stops Wait-off thinking on text: setting 0 is never cut from a run with Wait on
    assert bf.derivable(2, 1, "s1") and not bf.derivable(2, 0, "s1") and bf.derivable(0, 0, "s1")
    assert bf.runs_needed([0, 1, 2], "project") == [2] and bf.runs_needed([0, 1, 2], "s1") == [0, 2]
    assert bf.runs_needed([1, 3], "s1") == [3]


def test_s1_rule_edge_cases(tokenizer, tiny_model):
    """Rule s1 on the scripted model: every departure from the project rule occurs, and the
    rows show s1's behaviour in each."""
    bound = make_bound(tokenizer, tiny_model, "s1")
    backend = ScriptedBackend(bound, stop_every=4, newline_every=5)
    requests = make_requests(bound, n=24)
    budgets = [2, 3, 5, 8, 13]
    rows = bf.run(backend, bound, requests, budgets, 3, [2], bf.Tally(quiet=True), rule="s1")
    project = {_key(r): r for r in bf.run(backend, bound, requests, budgets, 3, [2], bf.Tally(quiet=True))}
    forced = bound.decode(bound.forced_answer_ids)
    wait = bound.decode(bound.wait_ids)
    seen = set()
    for row in rows:
        assert row["thinking_tokens"] <= row["budget"]
        if row["hit_budget"]:
            assert row["think_finish"] == "budget"
            assert row["answer_prefix"] in (forced, forced[1:])
            newline = row["answer_prefix"] == forced[1:]
            seen.add("newline dropped" if newline else "newline added")
            # s1 reads the thinking as generated, which runs past the cut after a Wait round
            ends = row["thinking"].rstrip("\ufffd").endswith("\n")  # an unfinished character is not text yet
            if row["waits"] == 0:
                assert newline == ends
            elif newline != ends:
                seen.add("newline read beyond the cut")
        else:
            assert row["answer_prefix"] == bound.decode(bound.answer_start_ids)
            if row["thinking_tokens"] == row["budget"]:
                seen.add("natural delimiter after the cut")
        other = project[_key(row)]
        if row["waits"] > other["waits"] and not other["hit_budget"]:
            seen.add("Wait beyond the budget")
        assert row["thinking"].count(wait) <= row["waits"]  # a Wait may lie beyond the cut
    assert seen == {"newline dropped", "newline added", "newline read beyond the cut",
                    "natural delimiter after the cut", "Wait beyond the budget"}


def test_s1_rule_refuses_multi_token_delimiters_with_wait(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model, "generic")
    requests = make_requests(bound, n=2)
    with pytest.raises(templates.TemplateError, match="generation.wait_rule"):
        bf.check_lengths(requests, bound, [8], 4, 1024, wait_times=1, rule="s1")
    bf.check_lengths(requests, bound, [8], 4, 1024, wait_times=0, rule="s1")  # text stops, as s1 without Wait


def test_s1_rule_needs_room_for_every_round(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model, "s1")
    requests = make_requests(bound, n=2)
    bf.check_lengths(requests, bound, [400], 100, 1024, wait_times=2)  # the project rule fits
    with pytest.raises(bf.LengthError, match="generation.wait_rule s1"):
        bf.check_lengths(requests, bound, [400], 100, 1024, wait_times=2, rule="s1")


def test_structure_of_rows(tokenizer, tiny_model):
    bound = make_bound(tokenizer, tiny_model)
    requests = make_requests(bound, n=10)
    tally = bf.Tally(quiet=True)
    rows = bf.run(ScriptedBackend(bound), bound, requests, [4, 16, 64], 5, [2], tally)
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
    rows = bf.run(ScriptedBackend(bound, stop_every=3), bound, requests, [30, 40, 50], 4, [0], tally)
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
        bf.cut(bf.Thinking(ids=[1, 2], stops=[], budget=2, wait_times=0), 4, 1, 0)


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
    ours = {_key(r): r for r in bf.run(backend, bound, requests, budgets, 6, [1], bf.Tally(quiet=True))}
    reference = {_key(r): r for r in bf.run_per_budget(backend, bound, requests, budgets, 6, [1], bf.Tally(quiet=True))}
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
        rows = bf.run(backend, bound, requests, budgets, 4, [1], bf.Tally(quiet=True))
        for row in rows:
            assert row["thinking_tokens"] <= row["budget"] and row["answer_tokens"] <= 4
            assert row["answer_prefix"] == bound.decode(bound.answer_ids(forced=row["hit_budget"]))
        plans.append([(_key(r), r["hit_budget"], r["thinking_tokens"], r["waits"]) for r in rows])
    assert plans[0] == plans[1]


# --------------------------------------------------------------------------- s1's harness, anew


# Delimiters in s1's shape (forced = newline + answer delimiter + "\nFinal Answer:"), with an end
# of thinking the tiny model emits often, so natural ends, Wait rounds and every edge case occur
# under greedy decoding: " )" (frequent anywhere: rounds that stop past the budget) or the
# commonest first token ("first": rounds that would stop at once). think_start opens with a
# newline, which s1 reads as thinking that ends with one.
FREQUENT = {"think_start": "\n<think>", "think_end": " )", "answer_start": "<|im_start|>answer",
            "forced_answer": "\n<|im_start|>answer\nFinal Answer:"}
S1_BUDGETS = list(range(1, 13)) + [16, 20]  # every small budget: a stop lands just before one
S1_TEMPLATES = ("s1", "frequent", "first")


def frequent_template(llm, tokenizer, tiny_model):
    """FREQUENT with think_end the token greedy decoding most often opens the thinking with."""
    from collections import Counter

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    probe = templates.bind(templates.get("generic", {**FREQUENT, "think_end": "<think>"}), tokenizer, tiny_model)
    outs = llm.generate([TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in make_requests(probe, n=12)],
                        SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)
    special = set(tokenizer.all_special_ids)
    for token, _ in Counter(o.outputs[0].token_ids[0] for o in outs).most_common():
        text = tokenizer.decode([token])
        if token not in special and tokenizer.encode(text, add_special_tokens=False) == [token]:
            return templates.get("generic", {**FREQUENT, "think_end": text})
    raise AssertionError("no first token of the tiny model can serve as a delimiter")


def s1_harness(llm, bound, items, wait_times, answer_max_tokens):
    """s1's evaluation loop (its lm-evaluation-harness vLLM model with max_tokens_thinking and,
    for Wait, thinking_n_ignore), written as a plain loop on vLLM calls, greedy. `items` are
    (prompt ids, budget) pairs, all run in each call as s1 runs one budget's batch. Returns per
    item the thinking and answer ids, the answer delimiter, and the points where the project rule
    would have decided otherwise."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer, template = bound.tokenizer, bound.template
    until = [template.think_end, tokenizer.eos_token]
    until_ids = [bound.encode(u) for u in until]
    text_opts = {"temperature": 0.0, "skip_special_tokens": False, "spaces_between_special_tokens": False}

    def thinking_params(budget):
        if wait_times:  # stop ids, and no stop on a round's first token
            return SamplingParams(max_tokens=budget, min_tokens=1, stop_token_ids=[u[0] for u in until_ids],
                                  **text_opts)
        return SamplingParams(max_tokens=budget, stop=until, **text_opts)

    def generate(token_lists, params):
        return [o.outputs[0] for o in llm.generate([TokensPrompt(prompt_token_ids=list(t)) for t in token_lists],
                                                   params, use_tqdm=False)]

    def strip(ids):
        for u in until_ids:
            if ids[-len(u):] == u:
                ids = ids[:-len(u)]
        return ids

    budgets = [budget for _, budget in items]
    stop_set = {u[0] for u in until_ids} | set(bound.eos_ids)
    flags = [set() for _ in items]
    ids, text, finish = [[] for _ in items], ["" for _ in items], [None for _ in items]
    current, pending = [list(prompt) for prompt, _ in items], list(range(len(items)))
    for round_ in range(wait_times + 1):
        if wait_times:  # would the round have stopped on its first token without min_tokens?
            firsts = generate([current[i] for i in pending], SamplingParams(max_tokens=1, temperature=0.0))
            for i, first in zip(pending, firsts):
                if first.token_ids[0] in stop_set:
                    flags[i].add("min_tokens")
        outs = generate([current[i] for i in pending], [thinking_params(budgets[i]) for i in pending])
        still = []
        for i, out in zip(pending, outs):
            cont = list(out.token_ids)
            if out.finish_reason == "length" or round_ == wait_times:
                ids[i] += cont
                text[i] += out.text
                finish[i] = out.finish_reason
                if out.finish_reason == "stop" and cont[-1] not in stop_set:
                    flags[i].add("text_stop")
                continue
            cont = strip(cont)
            if len(ids[i]) + len(cont) + len(bound.wait_ids) >= budgets[i]:
                flags[i].add("wait_beyond_budget")
            cont += bound.wait_ids
            ids[i] += cont
            text[i] += out.text + "Wait"
            current[i] += cont
            still.append(i)
        pending = still
    answer_prompts, delimiters = [], []
    for i, (prompt, budget) in enumerate(items):
        if finish[i] == "stop" and len(ids[i]) > budget:
            flags[i].add("natural_after_cut")
        thinking = strip(ids[i][:budget])
        if finish[i] == "length":
            delimiter = bound.encode(template.answer_start + "\nFinal Answer:")
            if not text[i]:  # s1's harness fails here (text[-1] of an empty string)
                flags[i].add("empty_text")
            if text[i][-1:] == "\n" or template.think_start[0] == "\n":
                flags[i].add("newline")
            else:
                delimiter = bound.encode("\n") + delimiter
        else:
            delimiter = bound.encode(template.answer_start)
        ids[i] = thinking
        delimiters.append(delimiter)
        answer_prompts.append(list(prompt) + thinking + delimiter)
    answers = generate(answer_prompts, SamplingParams(max_tokens=answer_max_tokens, stop=[tokenizer.eos_token],
                                                      **text_opts))
    # the answer as the project records it: without the EOS that ended it
    return [{"thinking_ids": ids[i], "answer_prefix": bound.decode(delimiters[i]),
             "answer_ids": list(answers[i].token_ids)[:-1 if answers[i].finish_reason == "stop" else None],
             "hit_budget": finish[i] == "length", "flags": flags[i]} for i in range(len(items))]


@pytest.fixture(scope="module")
def s1_reference(tokenizer, tiny_model, vllm_engine):
    """s1's harness on every (template, wait times, budget), run once for the module."""
    cache = {}

    def get(name, wait_times):
        if (name, wait_times) not in cache:
            if name == "first":
                template = frequent_template(vllm_engine, tokenizer, tiny_model)
            else:
                template = templates.get("generic", FREQUENT) if name == "frequent" else templates.get(name)
            bound = templates.bind(template, tokenizer, tiny_model, "Wait")
            requests = make_requests(bound, n=12)
            items = [(r.prompt_ids, budget) for budget in S1_BUDGETS for r in requests]
            out = s1_harness(vllm_engine, bound, items, wait_times, 4)
            keys = [(r.problem_id, budget) for budget in S1_BUDGETS for r in requests]
            cache[name, wait_times] = bound, requests, dict(zip(keys, out))
        return cache[name, wait_times]

    return get


def _project_rows(vllm_engine, bound, requests, wait_times, rule):
    from pipeline.generation.vllm_backend import VllmBackend

    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    rows = bf.run(VllmBackend(vllm_engine, greedy), bound, requests, S1_BUDGETS, 4, [wait_times],
                  bf.Tally(quiet=True), rule=rule)
    return {(r["problem_id"], r["budget"]): r for r in rows}


COMPARED = ("thinking_ids", "answer_prefix", "answer_ids", "hit_budget")


@pytest.mark.vllm
@pytest.mark.parametrize("name", S1_TEMPLATES)
@pytest.mark.parametrize("wait_times", [0, 1, 2])
def test_wait_rule_s1_equals_s1_harness_token_for_token(vllm_engine, s1_reference, name, wait_times):
    bound, requests, reference = s1_reference(name, wait_times)
    ours = _project_rows(vllm_engine, bound, requests, wait_times, "s1")
    assert ours.keys() == reference.keys()
    for key, expected in reference.items():
        assert {f: ours[key][f] for f in COMPARED} == {f: expected[f] for f in COMPARED}, key


@pytest.mark.vllm
def test_project_rule_agrees_with_s1_where_the_rules_coincide(vllm_engine, s1_reference):
    agree = differ = 0
    seen = set()
    for name in S1_TEMPLATES:
        for wait_times in (0, 1, 2):
            bound, requests, reference = s1_reference(name, wait_times)
            ours = _project_rows(vllm_engine, bound, requests, wait_times, "project")
            for key, expected in reference.items():
                same = {f: ours[key][f] for f in COMPARED} == {f: expected[f] for f in COMPARED}
                if not expected["flags"]:
                    assert same, (name, wait_times, key)
                    agree += 1
                else:
                    seen |= expected["flags"]
                    differ += not same
    # both kinds of rows occur, every edge case bites somewhere, and the rules do differ there
    assert agree > 50 and differ > 10
    assert {"min_tokens", "wait_beyond_budget", "natural_after_cut", "newline"} <= seen, seen


def test_direct_template_cuts_one_reply_as_runs_per_budget_would(tokenizer, tiny_model):
    """A model without thinking: one reply at the largest budget serves every budget exactly as
    a separate generation capped at that budget would, with no thinking and no Wait."""
    bound = make_bound(tokenizer, tiny_model, "direct")
    backend = ScriptedBackend(bound, stop_every=7)
    requests = make_requests(bound, n=12, samples=2)
    assert list(requests[0].prompt_ids) == bound.encode(tokenizer.apply_chat_template(
        [{"role": "user", "content": "Problem 0: compute 0 + 0."}], tokenize=False, add_generation_prompt=True))
    budgets = [2, 5, 9, 30]
    quiet = bf.Tally(quiet=True)
    rows = bf.direct(backend, bound, requests, budgets, quiet)
    assert len(rows) == len(requests) * len(budgets)
    for budget in budgets:
        alone = backend.generate([bf.Gen(r.prompt_ids, budget, bf.derive_seed("answer", r.sample_seed),
                                         tuple(bound.eos_ids)) for r in requests])
        ours = [row for row in rows if row["budget"] == budget]
        for row, out in zip(ours, alone):
            expected = out.ids[:-1] if out.stopped else out.ids
            assert row["answer_ids"] == expected and row["hit_budget"] == (not out.stopped)
            assert row["thinking"] == "" and row["thinking_tokens"] == 0 and row["waits"] == 0
            assert row["answer_tokens"] <= budget
    assert {row["hit_budget"] for row in rows} == {True, False}  # both branches exercised
