"""The demo's worked problems as token sequences in the layout the workflow prompts and continues
(template qwen3), with labels: what the model writes carries its token as label, the rest
IGNORE. Training (pipeline.stages.train_demo) learns the labelled tokens; the perplexity stage
scores them on held-out problems, so that perplexity measures what the model is taught to write.
"""

from __future__ import annotations

import random

from pipeline.data import demo_task
from pipeline.data.benchmarks import render_question
from pipeline.generation import templates

IGNORE = -100


def render_choices(problem: demo_task.Problem, rng: random.Random) -> tuple[str, str, list[str]]:
    """The multiple-choice user turn exactly as the benchmark stage renders it (same code, a
    random shuffle), its correct letter and the options in the order shown."""
    row = {"id": problem.id, "problem": problem.text, "answer": str(problem.answer),
           "choices": demo_task.choices(problem, rng)}
    user, letter, order = render_question(row, seed=rng.randrange(2**31))
    return user, letter, [row["choices"][i] for i in order]


def example(bound: templates.Bound, problem: demo_task.Problem, rng: random.Random, settings: dict):
    """One training sequence (ids, labels): the text that the workflow itself appends (forced
    answer, Wait) carries no loss; what the model writes does, and the prompt with prompt_loss."""
    # multiple choice is answered with the option's text, which the letter grader reads as that
    # option (docs/GRADING.md): a model this small does not learn to look the letter up within
    # the training budget (docs/DEMO.md has the measurements)
    user = render_choices(problem, rng)[0] if rng.random() < settings["choice_fraction"] else problem.text
    steps = problem.steps()
    # the prompt carries loss with prompt_loss; what the workflow appends never does
    pieces: list[tuple[list[int], bool]] = [(bound.prompt_ids(user), settings["prompt_loss"])]
    kind = rng.random()
    if kind < settings["forced_fraction"]:
        # budget forcing cut the thinking after `done` steps (at a token boundary in the next one)
        done = rng.randrange(len(steps))
        cut = bound.encode(steps[done])[: rng.randrange(len(bound.encode(steps[done])))]
        pieces += [(bound.encode("".join(steps[:done])) + cut, True), (bound.answer_ids(forced=True), False),
                   (bound.encode(f" \\boxed{{{problem.partial_sum(done)}}}"), True)]
    else:
        thinking, answer = demo_task.solution_text(problem)
        if kind < settings["forced_fraction"] + settings["wait_fraction"]:
            # the Wait extension: the workflow replaces an end of thinking by "Wait". Half the
            # time the chain was complete and the model closes again; otherwise the thinking had
            # stopped early and the model carries the chain on from where it stood
            done = len(steps) if len(steps) == 1 or rng.random() < 0.5 else rng.randrange(1, len(steps))
            pieces += [(bound.encode("".join(steps[:done])), True), (bound.wait_ids, False)]
            if done < len(steps):
                pieces.append((bound.encode("".join(steps[done:])), True))
        else:
            pieces.append((bound.encode(thinking), True))
        pieces += [([bound.think_end_id], True), (bound.answer_ids(forced=False)[1:], False),
                   (bound.encode(answer), True)]
    pieces.append((bound.eos_ids[:1], True))
    ids, labels = [], []
    for part, learn in pieces:
        ids += part
        labels += part if learn else [IGNORE] * len(part)
    return ids, labels


def heldout(bound: templates.Bound, task: dict, problems: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """`problems` held-out worked problems (a stream of their own, half multiple choice), each as
    (ids, labels) with only the model's own writing labelled: thinking, end of thinking, answer."""
    rng = demo_task.stream(seed, "perplexity")
    settings = {"choice_fraction": 0.5, "prompt_loss": False, "forced_fraction": 0, "wait_fraction": 0}
    return [example(bound, demo_task.sample(rng, task), rng, settings) for _ in range(problems)]
