"""Budget forcing over many budgets from one long thinking run (backend-independent).

Semantics (s1's budget forcing; docs/BUDGET_FORCING.md compares the two rules):
- The budget counts the tokens of the thinking as it stands in the final prompt, between
  think_start and the answer delimiter: generated tokens and inserted Wait tokens alike. A
  stripped end-of-thinking token only uses the budget of the round that generated it.
- Thinking ends by itself (think_end or EOS, stripped) -> the template's answer_start; it hits
  the budget -> the forced answer ("... Final Answer:"). The answer phase has its own cap,
  answer_max_tokens, clipped to the context left under max_model_len.
- Wait extension: up to `wait_times` times, when thinking ends with room left in the budget for
  the Wait string and at least one more token, the end token is stripped, Wait appended and
  thinking continues within the remaining budget. Round r is seeded from (sample_seed, r).

Wait rule `s1` (generation.wait_rule) reproduces s1's evaluation harness instead; see
docs/BUDGET_FORCING.md for every difference: each round may run to the full budget and the
total is cut afterwards, a Wait is appended after every natural end but the last allowed one,
the answer delimiter follows how the last round ended, rounds with Wait on cannot stop on their
first token, and the forced delimiter loses its leading newline after a newline.

One long run: for a given request and seed, thinking under budget B is the first part of the
thinking under any larger budget (same prompt, same seeds, same tokens until B). So thinking is
generated once at the largest budget and `cut` (`cut_s1`) derives every smaller budget from it,
replaying where the run under B would have stopped or waited; only the short answer phase is
generated per budget. This holds under both rules: under s1's, every round of the run under B is
the same round of the longer run truncated to B tokens. Budgets whose cut is identical share one
answer. `run_per_budget` is the reference way (one thinking run per budget), kept for comparisons.

Several Wait settings (generation.wait.times: [0, 1, ...]): likewise, the run with w Waits is the
run with more Waits up to the natural end where it would not wait (same prompt, same per-round
seeds, same stops), so thinking is generated once with the largest setting and `cut` derives every
smaller one, for every budget; each row records its setting (`wait_times`) beside the Waits it
holds (`waits`). Under s1's rule this holds between settings with Wait on, but Wait off (0) stops
thinking on text rather than on ids: setting 0 gets a run of its own there (`derivable`). Settings
and budgets whose cuts are identical share one answer.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.generation.templates import Bound, TemplateError

SEED_RANGE = 2**31  # vLLM and torch both accept it; per-request seeds never need more
RULES = ("project", "s1")  # generation.wait_rule


class LengthError(ValueError):
    """Budgets, answer cap and prompts do not fit in the model's context."""


# --------------------------------------------------------------------------- backend interface


@dataclass(frozen=True)
class Gen:
    """One generation request: continue `prompt_ids` for at most `max_tokens` tokens."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    seed: int
    stop_ids: tuple[int, ...]
    stop_strings: tuple[str, ...] = ()
    min_tokens: int = 0  # stop ids (EOS included) cannot end the output before this many tokens


@dataclass(frozen=True)
class Out:
    ids: list[int]  # generated ids, the stop token (if any) included
    stopped: bool  # ended on a stop id or stop string (False: ran out of max_tokens)


class Backend(Protocol):
    name: str
    version: str
    max_model_len: int

    def generate(self, requests: list[Gen]) -> list[Out]:
        """All requests in one batch, outputs in request order."""


@dataclass
class Tally:
    """Generated tokens, requests and seconds, per phase; prints a progress line per batch.
    `steps` adds up each batch's longest generation: the decode steps an engine that runs the
    whole batch at once needs, a load-independent measure of wall time."""

    tokens: int = 0
    steps: int = 0
    requests: int = 0
    seconds: float = 0.0
    quiet: bool = False
    phases: dict = field(default_factory=dict)

    def generate(self, backend: Backend, requests: list[Gen], phase: str) -> list[Out]:
        if not requests:
            return []
        start = time.perf_counter()
        outs = backend.generate(requests)
        seconds = time.perf_counter() - start
        tokens = sum(len(out.ids) for out in outs)
        self.tokens += tokens
        self.steps += max(len(out.ids) for out in outs)
        self.requests += len(requests)
        self.seconds += seconds
        self.phases[phase] = self.phases.get(phase, 0) + tokens
        if not self.quiet:
            print(f"[generate] {phase}: {len(requests)} requests, {tokens} tokens, {seconds:.1f} s "
                  f"({tokens / max(seconds, 1e-9):.0f} tok/s)", file=sys.stderr, flush=True)
        return outs


# --------------------------------------------------------------------------- requests and seeds


def derive_seed(*parts) -> int:
    """A deterministic seed from any parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") % SEED_RANGE


def sample_seed(seed: int, problem_id: str, sample: int) -> int:
    """Distinct seeds per parallel sample: runs with seeds 7 and 8 never share a sample, as
    they would with vLLM's n (seeds s, s+1, ...)."""
    return derive_seed("sample", seed, problem_id, sample)


@dataclass(frozen=True)
class Request:
    """One thinking trajectory: a problem under one seed and sample."""

    problem_id: str
    seed: int
    sample: int
    sample_seed: int
    prompt_ids: tuple[int, ...]
    gold: str
    choice_order: tuple[int, ...] | None


# --------------------------------------------------------------------------- thinking


@dataclass(frozen=True)
class Stop:
    """Thinking ended by itself: `kept` thinking tokens so far, `tail` the stripped stop ids."""

    kept: int
    tail: tuple[int, ...]
    kind: str  # think_end | eos


@dataclass
class Thinking:
    """The thinking of one request under `budget` with up to `wait_times` Waits: its tokens (Wait
    tokens included) and the points where it ended by itself (each followed by Wait, except
    possibly the last)."""

    ids: list[int]
    stops: list[Stop]
    budget: int
    wait_times: int


@dataclass(frozen=True)
class Cut:
    """The thinking that a run under a smaller budget would have produced."""

    ids: list[int]
    hit_budget: bool  # the answer is forced
    waits: int
    finish: str  # think_end | eos | budget
    newline: bool = False  # s1 rule: the thinking as generated ends with a newline


@dataclass(frozen=True)
class S1Stops:
    """How s1's harness ends a thinking round: with Wait on, on the ids of its two delimiters
    (think_end and the tokenizer's EOS), never on a round's first token; with Wait off, on the
    same two delimiters matched as text. Either way it strips each delimiter's tokens, in that
    order, from the end of a round, and nothing else."""

    stop_ids: tuple[int, ...]
    stop_strings: tuple[str, ...]
    strip: tuple[tuple[int, ...], ...]
    min_tokens: int


def s1_stops(bound: Bound, wait_times: int) -> S1Stops:
    ends = (bound.template.think_end, bound.tokenizer.eos_token)
    strip = tuple(tuple(bound.encode(end)) for end in ends)
    if wait_times == 0:
        return S1Stops(tuple(bound.eos_ids), ends, strip, 0)
    long = [end for end, ids in zip(ends, strip) if len(ids) != 1]
    if long:
        raise TemplateError(
            f"generation.wait_rule s1 with generation.wait.times > 0 stops thinking on single-token delimiters "
            f"(as s1's harness does), but {', '.join(map(repr, long))} is several tokens in this tokenizer; "
            "use generation.wait_rule project, or a template whose think_end is one token"
        )
    return S1Stops(tuple(sorted({*bound.eos_ids, *(ids[0] for ids in strip)})), (), strip, 1)


def _strip_s1(ids: list[int], strip: tuple[tuple[int, ...], ...]) -> int:
    """How many leading ids s1 keeps of a round that stopped."""
    keep = len(ids)
    for seq in strip:
        if keep >= len(seq) and tuple(ids[keep - len(seq):keep]) == seq:
            keep -= len(seq)
    return keep


def think(backend: Backend, bound: Bound, requests: list[Request], budget: int, wait_times: int,
          tally: Tally, label: str = "", rule: str = "project") -> list[Thinking]:
    """Thinking for every request under `budget`; each Wait round is one batch. Under rule s1
    each round may generate `budget` tokens and every natural end but the last allowed one gets
    a Wait, whatever the total; `cut_s1` then applies the budget."""
    if rule not in RULES:
        raise ValueError(f"unknown generation.wait_rule {rule!r}; choose {' or '.join(RULES)}")
    states = [Thinking(ids=[], stops=[], budget=budget, wait_times=wait_times) for _ in requests]
    active = list(range(len(requests)))
    wait = bound.wait_ids
    if rule == "s1":
        s1 = s1_stops(bound, wait_times)
        stop_ids, stop_strings, min_tokens = s1.stop_ids, s1.stop_strings, s1.min_tokens
    else:
        stop_ids, stop_strings, min_tokens = tuple(bound.think_stop_ids), tuple(bound.think_stop_strings), 0
    for round_ in range(wait_times + 1):
        gens = [Gen(prompt_ids=requests[i].prompt_ids + tuple(states[i].ids),
                    max_tokens=budget if rule == "s1" else budget - len(states[i].ids),
                    seed=derive_seed("think", requests[i].sample_seed, round_), stop_ids=stop_ids,
                    stop_strings=stop_strings, min_tokens=min_tokens) for i in active]
        outs = tally.generate(backend, gens, f"{label}thinking (budget {budget}, round {round_})")
        still = []
        for i, out in zip(active, outs):
            state = states[i]
            if not out.stopped:
                state.ids += out.ids  # budget spent
                continue
            if rule == "s1":
                keep = _strip_s1(out.ids, s1.strip)
                kind = "eos" if out.ids and out.ids[-1] in bound.eos_ids else "think_end"
            else:
                keep, kind = bound.split_stop(out.ids)
            state.ids += out.ids[:keep]
            state.stops.append(Stop(kept=len(state.ids), tail=tuple(out.ids[keep:]), kind=kind))
            s1_waits = rule == "s1" and round_ < wait_times  # s1: whatever the budget left
            if s1_waits or (rule == "project" and _waits(round_, len(state.ids), len(wait), budget, wait_times)):
                state.ids += wait
                still.append(i)
        active = still
        if not active:
            break
    return states


def _waits(round_: int, kept: int, wait_len: int, budget: int, wait_times: int) -> bool:
    """Whether thinking that ended by itself after `round_` Wait rounds gets another Wait."""
    return round_ < wait_times and kept + wait_len < budget


def derivable(generated: int, setting: int, rule: str) -> bool:
    """Whether thinking generated with up to `generated` Waits yields the run with `setting` by a
    cut. Fewer Waits are the same run stopped earlier, except under s1's rule across Wait off and
    on: s1 then stops thinking on text rather than ids, and lets a round end on its first token."""
    if rule == "s1" and (generated == 0) != (setting == 0):
        return False
    return setting <= generated


def runs_needed(wait_times: list[int], rule: str) -> list[int]:
    """The Wait settings to generate thinking with so that every setting of `wait_times` is a cut
    of one of them: the largest, and under s1's rule 0 too when it is listed."""
    top = max(wait_times)
    return sorted({top if derivable(top, w, rule) else w for w in wait_times})


def sources(wait_times: list[int], runs: dict[int, list[Thinking]], rule: str) -> dict[int, list[Thinking]] | None:
    """Each Wait setting's thinking: a run (setting it was generated with -> thinking per request)
    that yields it by a cut; any such run gives the same cut. None when a setting has none."""
    out = {}
    for setting in wait_times:
        served = [generated for generated in sorted(runs) if derivable(generated, setting, rule)]
        if not served:
            return None
        out[setting] = runs[served[0]]
    return out


def think_runs(backend: Backend, bound: Bound, requests: list[Request], budget: int, wait_times: list[int],
               tally: Tally, label: str = "", rule: str = "project") -> dict[int, list[Thinking]]:
    """The thinking runs that serve every Wait setting (`runs_needed`), by the setting each was
    generated with."""
    return {generated: think(backend, bound, requests, budget, generated, tally, label, rule)
            for generated in runs_needed(wait_times, rule)}


def cut(thinking: Thinking, budget: int, wait_len: int, wait_times: int) -> Cut:
    """What a run under `budget` (<= thinking.budget) would have produced, from the longer run.

    Both runs see the same tokens up to the first point where they differ: a stop that the
    smaller budget reaches decides the same way unless the Wait no longer fits; a stop that it
    does not reach means the smaller budget was spent first."""
    _check_cut(thinking, budget, wait_times, "project")
    start = 0  # where the current round began in the thinking
    for round_, stop in enumerate(thinking.stops):
        if stop.kept + len(stop.tail) > budget:  # the stop token lies beyond this budget
            break
        if not _waits(round_, stop.kept, wait_len, budget, wait_times):
            return Cut(ids=thinking.ids[:stop.kept], hit_budget=False, waits=round_, finish=stop.kind)
        start = stop.kept + wait_len
    else:
        round_ = len(thinking.stops)
    # budget spent in round `round_`: its generated tokens, stripped stop tail included
    generated = thinking.ids[:start] + (
        thinking.ids[start:thinking.stops[round_].kept] + list(thinking.stops[round_].tail)
        if round_ < len(thinking.stops) else thinking.ids[start:]
    )
    return Cut(ids=generated[:budget], hit_budget=True, waits=round_, finish="budget")


def _check_cut(thinking: Thinking, budget: int, wait_times: int, rule: str) -> None:
    if budget > thinking.budget:
        raise ValueError(f"cannot cut thinking generated under budget {thinking.budget} to a larger budget {budget}")
    if not derivable(thinking.wait_times, wait_times, rule):
        raise ValueError(f"cannot cut thinking generated with wait times {thinking.wait_times} to wait times "
                         f"{wait_times} under rule {rule}")


def cut_s1(thinking: Thinking, budget: int, bound: Bound, wait_times: int) -> Cut:
    """What s1's harness under `budget` would have produced, from a longer run under rule s1:
    each of its rounds is the same round of the longer run cut to `budget` tokens (a stop beyond
    them is a round that ran out); the rounds' total is then cut to `budget` and stripped of a
    trailing delimiter, and how the last round ended picks the answer delimiter."""
    _check_cut(thinking, budget, wait_times, "s1")
    strip = s1_stops(bound, wait_times).strip
    start = 0
    for round_ in range(wait_times + 1):
        stop = thinking.stops[round_] if round_ < len(thinking.stops) else None
        generated = thinking.ids[start:stop.kept] + list(stop.tail) if stop else thinking.ids[start:]
        if stop is not None and len(generated) <= budget:
            if round_ < wait_times:
                start = stop.kept + len(bound.wait_ids)
                continue
            ids = (thinking.ids[:start] + generated)[:budget]
            return Cut(ids=ids[:_strip_s1(ids, strip)], hit_budget=False, waits=round_, finish=stop.kind)
        as_generated = thinking.ids[:start] + generated[:budget]
        ids = as_generated[:budget]
        return Cut(ids=ids[:_strip_s1(ids, strip)], hit_budget=True, waits=round_, finish="budget",
                   newline=_ends_with_newline(bound, as_generated))
    raise AssertionError("unreachable: the last round always ends the thinking")


def _ends_with_newline(bound: Bound, ids: list[int]) -> bool:
    """s1 reads the thinking's text as vLLM streamed it, uncut: an unfinished character at its
    end is not there yet. A think_start opening with a newline counts as one (s1's own rule)."""
    return bound.decode(ids).rstrip("\ufffd").endswith("\n") or bound.template.think_start.startswith("\n")


def forced_after_newline_ids(bound: Bound) -> list[int]:
    """s1's forced delimiter after thinking that ends with a newline: without its own leading one."""
    forced = bound.template.forced_answer
    return bound.encode(forced[1:]) if forced.startswith("\n") else list(bound.forced_answer_ids)


# --------------------------------------------------------------------------- answers


def check_lengths(requests: list[Request], bound: Bound, budgets: list[int], answer_max_tokens: int,
                  max_model_len: int, wait_times: int = 0, rule: str = "project") -> None:
    """Refuse, before any generation, budgets that cannot fit in the context. `wait_times`: the
    largest Wait setting (it has the most rounds)."""
    if max(budgets) + answer_max_tokens > max_model_len:
        raise LengthError(
            f"the largest budget {max(budgets)} plus generation.answer_max_tokens {answer_max_tokens} exceeds "
            f"max_model_len {max_model_len}; lower generation.answer_max_tokens (or the budgets) or raise "
            "generation.vllm.max_model_len"
        )
    longest = max(len(r.prompt_ids) for r in requests)
    need = longest + max(budgets) + max(len(bound.forced_answer_ids), len(bound.answer_start_ids)) + 1
    if need > max_model_len:
        raise LengthError(
            f"the longest prompt ({longest} tokens) plus the largest budget {max(budgets)} and the answer "
            f"delimiter leaves no room for an answer within max_model_len {max_model_len}; raise "
            "generation.vllm.max_model_len or lower generation.budgets"
        )
    if rule == "s1":
        s1_stops(bound, wait_times)  # refuses delimiters s1's harness cannot stop on
        # every round may run to the full budget: the context must hold them all, or the engine
        # would end a round early where s1's would not
        rounds = longest + wait_times * (max(budgets) + len(bound.wait_ids)) + max(budgets)
        if rounds > max_model_len:
            raise LengthError(
                f"generation.wait_rule s1 lets each of the {wait_times + 1} thinking rounds run to the full budget: "
                f"the longest prompt ({longest} tokens) plus {wait_times + 1} x {max(budgets)} tokens and the Wait "
                f"strings need {rounds} tokens, over max_model_len {max_model_len}; raise "
                "generation.vllm.max_model_len, lower generation.budgets or generation.wait.times, or use "
                "generation.wait_rule project"
            )


def answer(backend: Backend, bound: Bound, requests: list[Request], runs: dict[int, list[Thinking]],
           budgets: list[int], answer_max_tokens: int, wait_times: list[int], tally: Tally,
           label: str = "", rule: str = "project") -> list[dict]:
    """Cut the thinking to every Wait setting and budget and generate all answers in one batch.
    `runs`: thinking runs by the setting each was generated with (`think_runs`). Returns one row
    per (request, setting, budget), requests outer, then settings and budgets ascending."""
    thinkings = sources(wait_times, runs, rule)
    if thinkings is None:
        raise ValueError(f"thinking generated with wait times {sorted(runs)} cannot serve wait times {wait_times} "
                         f"under rule {rule}")
    planned, gens, index = [], [], {}
    for i, request in enumerate(requests):
        for setting in sorted(wait_times):
            for budget in sorted(budgets):
                if rule == "s1":
                    c = cut_s1(thinkings[setting][i], budget, bound, setting)
                else:
                    c = cut(thinkings[setting][i], budget, len(bound.wait_ids), setting)
                prefix = forced_after_newline_ids(bound) if c.newline else bound.answer_ids(forced=c.hit_budget)
                prompt = request.prompt_ids + tuple(c.ids) + tuple(prefix)
                gen = Gen(prompt_ids=prompt, max_tokens=min(answer_max_tokens, backend.max_model_len - len(prompt)),
                          seed=derive_seed("answer", request.sample_seed), stop_ids=tuple(bound.eos_ids))
                if gen not in index:  # same thinking, same seed: the same answer, whatever the budget or setting
                    index[gen] = len(gens)
                    gens.append(gen)
                planned.append((request, setting, budget, c, prefix, index[gen]))
    settings = f", {len(wait_times)} Wait settings" if len(wait_times) > 1 else ""
    outs = tally.generate(backend, gens, f"{label}answers ({len(budgets)} budgets{settings})")
    rows = []
    for request, setting, budget, c, prefix, k in planned:
        out = outs[k]
        ids = out.ids[:-1] if out.stopped else out.ids
        rows.append({
            "problem_id": request.problem_id, "seed": request.seed, "sample": request.sample,
            "sample_seed": request.sample_seed, "budget": budget, "wait_times": setting, "gold": request.gold,
            "choice_order": list(request.choice_order) if request.choice_order is not None else None,
            "prompt_tokens": len(request.prompt_ids), "thinking": bound.decode(c.ids),
            "answer_prefix": bound.decode(prefix), "answer": bound.decode(ids),
            "thinking_tokens": len(c.ids), "answer_tokens": len(ids), "hit_budget": c.hit_budget,
            "waits": c.waits, "think_finish": c.finish, "answer_finish": "eos" if out.stopped else "length",
            "thinking_ids": list(c.ids), "answer_ids": list(ids),
        })
    return rows


def direct(backend: Backend, bound: Bound, requests: list[Request], budgets: list[int], tally: Tally,
           label: str = "") -> list[dict]:
    """A model that does not think (template direct) answers at once, the budget capping its
    answer. One reply per request at the largest budget; a smaller budget's answer is the reply's
    first `budget` tokens, which is what a run under that budget generates (same prompt, same
    seed). Rows as `answer` gives them, with no thinking; hit_budget: the reply was cut."""
    gens = [Gen(prompt_ids=r.prompt_ids, max_tokens=max(budgets), seed=derive_seed("answer", r.sample_seed),
                stop_ids=tuple(bound.eos_ids)) for r in requests]
    outs = tally.generate(backend, gens, f"{label}answers (no thinking, {len(budgets)} budgets)")
    rows = []
    for request, out in zip(requests, outs):
        for budget in sorted(budgets):
            ended = out.stopped and len(out.ids) <= budget  # the stop token fits in this budget
            ids = out.ids[:-1] if ended else out.ids[:budget]
            rows.append({
                "problem_id": request.problem_id, "seed": request.seed, "sample": request.sample,
                "sample_seed": request.sample_seed, "budget": budget, "wait_times": 0, "gold": request.gold,
                "choice_order": list(request.choice_order) if request.choice_order is not None else None,
                "prompt_tokens": len(request.prompt_ids), "thinking": "", "answer_prefix": "",
                "answer": bound.decode(ids), "thinking_tokens": 0, "answer_tokens": len(ids), "hit_budget": not ended,
                "waits": 0, "think_finish": "none", "answer_finish": "eos" if ended else "length",
                "thinking_ids": [], "answer_ids": list(ids),
            })
    return rows


def run(backend: Backend, bound: Bound, requests: list[Request], budgets: list[int], answer_max_tokens: int,
        wait_times: list[int], tally: Tally, rule: str = "project") -> list[dict]:
    """Our way: thinking once at the largest budget (and Wait setting), answers for all budgets and
    settings in one batch."""
    runs = think_runs(backend, bound, requests, max(budgets), wait_times, tally, rule=rule)
    return answer(backend, bound, requests, runs, budgets, answer_max_tokens, wait_times, tally, rule=rule)


def run_per_budget(backend: Backend, bound: Bound, requests: list[Request], budgets: list[int],
                   answer_max_tokens: int, wait_times: list[int], tally: Tally, rule: str = "project") -> list[dict]:
    """The reference way: a separate thinking run and answer batch per budget and Wait setting."""
    rows = []
    for budget in sorted(budgets):
        for setting in sorted(wait_times):
            thinking = think(backend, bound, requests, budget, setting, tally, label="[per budget] ", rule=rule)
            rows += answer(backend, bound, requests, {setting: thinking}, [budget], answer_max_tokens, [setting],
                           tally, label="[per budget] ", rule=rule)
    return rows
