"""The demo's synthetic task and how its training sequences are laid out."""

from __future__ import annotations

import random

import pytest

from pipeline.data import benchmarks, demo_task
from pipeline.generation import demo_transcripts, templates
from pipeline.models import demo_model
from pipeline.stages import train_demo


def test_worked_solution_is_the_chain():
    problem = demo_task.Problem(4, 7, 4)
    assert problem.text == ("Each number is the sum of the two before it, modulo 10. Count down from d to a, "
                            "starting with 4 and 7.")
    assert problem.sequence() == [4, 7, 1, 8, 9, 7] and problem.answer == 7
    assert problem.steps() == [" d1", " c8", " b9", " a7"]
    # the best guess when the chain is cut: the last number written (a starting digit before any step)
    assert [problem.partial_sum(done) for done in range(5)] == [7, 1, 8, 9, 7]
    thinking, answer = demo_task.solution_text(problem)
    assert thinking == " d1 c8 b9 a7" and answer == "The answer is \\boxed{7}."


def test_lengths_spread_over_the_configured_range():
    rng = demo_task.stream(0, "train")
    lengths = [demo_task.sample(rng, {"min_terms": 2, "max_terms": 6}).n for _ in range(500)]
    assert set(lengths) == {2, 3, 4, 5, 6}
    with pytest.raises(ValueError, match="min_terms"):
        demo_task.sample(rng, {"min_terms": 5, "max_terms": 3})


def test_purposes_draw_from_independent_streams():
    draws = {purpose: [demo_task.sample(demo_task.stream(1, purpose)) for _ in range(3)]
             for purpose in ("train", "benchmark", "calibration")}
    assert draws["train"] != draws["benchmark"] != draws["calibration"]
    assert demo_task.stream(1, "train").random() == demo_task.stream(1, "train").random()


def test_benchmark_rows_load_as_a_benchmark():
    table = benchmarks.load("chain", {"demo_task": {"form": "choice", "problems": 30, "seed": 3, "task": {}},
                                      "grader": "choice"})
    assert len(table) == 30 and table["id"].is_unique
    for row in table.to_dict("records"):
        assert row["answer"] in row["choices"] and len(set(row["choices"])) == 4
        first, second = int(row["problem"][-8]), int(row["problem"][-2])
        n = "abcdefghijklmnopqrstuvwx".index(row["problem"].split("Count down from ")[1][0]) + 1
        assert row["answer"] == str(demo_task.Problem(first, second, n).answer)
    math = benchmarks.load("chain", {"demo_task": {"form": "math", "problems": 5, "seed": 3}, "grader": "math"})
    assert math["choices"].isna().all()


@pytest.fixture(scope="module")
def bound():
    tokenizer = demo_model.build_tokenizer(512, corpus=train_demo.tokenizer_corpus(demo_task.DEFAULTS, 0))
    return templates.bind(templates.QWEN3, tokenizer)


def test_digits_and_labels_are_single_tokens(bound):
    tokens = bound.tokenizer.convert_ids_to_tokens(bound.encode(" c8 b9 a7"))
    assert tokens == ["Ġc", "8", "Ġb", "9", "Ġa", "7"]


def test_training_prompt_is_the_benchmark_prompt():
    """The multiple-choice user turn the model learns on is the one pipeline.data.benchmarks renders."""
    problem = demo_task.Problem(4, 4, 9)
    letters = set()
    for seed in range(12):
        user, letter, options = demo_transcripts.render_choices(problem, random.Random(seed))
        lines = user.split("\n\n")[1].splitlines()
        assert user.startswith(problem.text + "\n\nA) ") and lines == [f"{l}) {o}" for l, o in zip("ABCD", options)]
        assert options["ABCD".index(letter)] == str(problem.answer)
        letters.add(letter)
    assert len(letters) > 1  # the correct option moves


def _learned(ids, labels, bound) -> str:
    return bound.decode([i for i, label in zip(ids, labels) if label != demo_transcripts.IGNORE])


def test_natural_example_learns_thinking_end_and_answer(bound):
    settings = {**train_demo.TRAIN_DEFAULTS, "forced_fraction": 0, "wait_fraction": 0, "choice_fraction": 0,
                "prompt_loss": False}
    problem = demo_task.Problem(1, 2, 2)
    ids, labels = demo_transcripts.example(bound, problem, random.Random(0), settings)
    text = bound.decode(ids)
    assert text == bound.decode(bound.prompt_ids(problem.text)) + " b3 a5</think>\n\nThe answer is \\boxed{5}.<|im_end|>"
    # the text the workflow appends carries no loss; the prompt only with prompt_loss
    assert _learned(ids, labels, bound) == " b3 a5</think>The answer is \\boxed{5}.<|im_end|>"
    ids, labels = demo_transcripts.example(bound, problem, random.Random(0), {**settings, "prompt_loss": True})
    assert _learned(ids, labels, bound) == bound.decode(ids).replace("</think>\n\n", "</think>")


def test_forced_example_learns_a_guess_after_the_forced_answer(bound):
    settings = {**train_demo.TRAIN_DEFAULTS, "forced_fraction": 1, "choice_fraction": 0}
    problem = demo_task.Problem(3, 9, 6)
    cuts = set()
    for seed in range(30):
        ids, labels = demo_transcripts.example(bound, problem, random.Random(seed), settings)
        text = bound.decode(ids)
        assert templates.QWEN3.forced_answer in text and text.endswith("}<|im_end|>")
        learned = _learned(ids, labels, bound)
        assert templates.QWEN3_EARLY_STOP.strip() not in learned and "</think>" not in learned
        thinking = text.split("<think>\n", 1)[1].split(templates.QWEN3_EARLY_STOP)[0]
        complete = [step for step in thinking.split(" ") if len(step) == 2 and step[1].isdigit()]
        assert "".join(problem.steps()).startswith(thinking)
        assert text.endswith(f"\\boxed{{{problem.partial_sum(len(complete))}}}<|im_end|>"), text
        cuts.add(len(bound.encode(thinking)))
    assert len(cuts) > 3  # cuts fall at many places, mid-step too


def test_wait_example_closes_a_complete_chain_and_carries_on_an_early_stop(bound):
    """After the Wait the workflow inserts (never learned), the model closes a complete chain
    and carries an unfinished one on from where it stood, to the same answer."""
    settings = {**train_demo.TRAIN_DEFAULTS, "forced_fraction": 0, "wait_fraction": 1, "choice_fraction": 0,
                "prompt_loss": False}
    problem = demo_task.Problem(3, 9, 6)
    chain, kinds = "".join(problem.steps()), set()
    for seed in range(30):
        ids, labels = demo_transcripts.example(bound, problem, random.Random(seed), settings)
        text = bound.decode(ids)
        thinking = text.split("<think>\n", 1)[1].split("</think>")[0]
        before, after = thinking.split("Wait")
        assert before + after == chain and before, thinking
        assert text.endswith(f"</think>\n\nThe answer is \\boxed{{{problem.answer}}}.<|im_end|>")
        assert "Wait" not in _learned(ids, labels, bound)
        kinds.add("closes" if not after else "carries on")
    assert kinds == {"closes", "carries on"}


def test_choice_example_answers_with_the_option_text_the_letter_grader_reads(bound):
    """Multiple choice is answered with the option's text; graded against the shown options,
    that is the gold letter."""
    from pipeline.grading import answers as grading

    settings = {**train_demo.TRAIN_DEFAULTS, "forced_fraction": 0, "wait_fraction": 0, "choice_fraction": 1}
    golds = set()
    for seed in range(20):
        problem = demo_task.Problem(seed % 10, 7, 1 + seed % 9)
        ids, _ = demo_transcripts.example(bound, problem, random.Random(seed), settings)
        text = bound.decode(ids)
        lines = text.split("<|im_end|>")[0].split("\n\n")[1].splitlines()
        options = [line.split(") ", 1)[1] for line in lines]
        gold = "ABCD"[options.index(str(problem.answer))]
        answer = text.split("</think>\n\n", 1)[1]
        assert grading.grade_one(gold, answer, "choice", options).status == "correct", (answer, options)
        golds.add(gold)
    assert len(golds) > 1


def test_heldout_transcripts_label_only_what_the_model_writes():
    """Perplexity on the demo's held-out problems scores the thinking, its end and the answer:
    not the prompt, not the text the workflow inserts."""
    tokenizer = demo_model.build_tokenizer(512, corpus=train_demo.tokenizer_corpus(demo_task.DEFAULTS, 0))
    bound = templates.bind(templates.QWEN3, tokenizer)
    pairs = demo_transcripts.heldout(bound, demo_task.DEFAULTS, problems=20, seed=0)
    assert pairs == demo_transcripts.heldout(bound, demo_task.DEFAULTS, problems=20, seed=0)
    for ids, labels in pairs:
        scored = bound.decode([i for i, label in zip(ids, labels) if label != demo_transcripts.IGNORE])
        assert scored.startswith(" ") and "</think>The answer is \\boxed{" in scored and scored.endswith(".<|im_end|>")
        assert "Each number" not in scored and "<|im_start|>" not in scored and "\n" not in scored
    # a stream of its own: not the training problems'
    first = demo_task.sample(demo_task.stream(0, "perplexity"))
    assert first != demo_task.sample(demo_task.stream(0, "train")) or first.n == 1
