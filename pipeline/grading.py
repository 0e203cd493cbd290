"""Answer extraction and comparison, with hard time limits.

A model's answer segment is graded in two steps:

1. extract: the last complete ``\\boxed{}`` (or ``\\fbox{}``; adjacent boxed answers on one line
   are joined: ``\\boxed{2}, \\boxed{-3}`` -> ``2, -3``), else the text after the last
   "Answer:" / "Final Answer:" / "The answer is", else the whole segment when it is one short
   line (an answer written right after a forced "Final Answer:"). The rule that matched is kept.
2. compare with the gold answer by grader:
   - integer / number: as exact decimals ("025" == 25, "27.0" == 27, "1,000" == 1000); an
     answer that is not a plain number (``\\frac{50}{2}``) goes to math-verify;
   - math: math-verify 0.9.0, ``verify(gold, pred)`` (gold first: it is not symmetric);
   - choice: the option letter, from "(C)", "\\boxed{C}", "**C**", "C) text", "Option C".

Status: correct | wrong | no_answer (nothing extracted) | timeout. math-verify's own time
limits use SIGALRM in ways that clash with ours, so they are off; `grade_many` runs every
answer in a worker process under a SIGALRM limit and kills (and replaces) a worker that does
not come back, as happens inside C code such as sympy's big-integer arithmetic.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from multiprocessing.connection import wait

# our worker processes enforce the time limits that math-verify would warn about
logging.getLogger("math_verify").setLevel(logging.ERROR)

GRADERS = ("integer", "number", "math", "choice")
STATUSES = ("correct", "wrong", "no_answer", "timeout")
LETTERS = "ABCDEFGHIJ"
# a whole answer segment counts as the answer when it is this short (prose is not an answer)
BARE_MAX_CHARS = 64
BARE_MAX_WORDS = 4
# seconds a worker may overrun its soft limit before it is killed (a fresh worker forks in
# milliseconds, so there is little to gain from waiting longer)
KILL_GRACE_S = 0.5


@dataclass(frozen=True)
class Verdict:
    status: str
    extracted: str | None
    rule: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_TAIL = r"(?:[ \t*_]*[:：]|\s+(?:is|would be|should be)\b[ \t]*[:：]?)"
_ANSWER_RE = {
    # "Answer:", "answer is", "**Final Answer**: ..." and a "## Final Answer" heading
    "default": re.compile(rf"\banswer\b{_ANSWER_TAIL}|\bfinal\s+answer\b[ \t*_:]*(?=\n)", re.I),
    "choice": re.compile(rf"\b(?:answer|option|choice)\b{_ANSWER_TAIL}|\bfinal\s+answer\b[ \t*_:]*(?=\n)", re.I),
}
# what may separate boxed answers that together form one answer ("x = \boxed{2} or x = \boxed{-3}")
_BOX_SEPARATOR_RE = re.compile(
    r"[\s$,;]*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad|,)[\s$,;]*)?(?:[a-zA-Z]\s*=\s*)?[\s$]*"
)


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each "{" -> position of its "}" in one linear pass (no quadratic rescans on
    long or unbalanced input); escaped braces are not counted."""
    pairs, stack = {}, []
    for match in re.finditer(r"(?<!\\)[{}]", text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def _boxed(text: str) -> tuple[str | None, str | None]:
    pairs = None
    found: list[tuple[int, int, str]] = []  # (start, end, content) of complete boxes
    for match in _BOX_RE.finditer(text):
        at = match.end()
        if at < len(text) and text[at] == "{":
            pairs = pairs if pairs is not None else _matching_braces(text)
            if at in pairs:
                found.append((match.start(), pairs[at] + 1, text[at + 1:pairs[at]]))
        elif match.group().strip() == "\\boxed" and at > match.start() + len("\\boxed"):
            bare = re.match(r"[^\s$.,;]+", text[at:])  # "\boxed 5"
            if bare:
                found.append((match.start(), at + bare.end(), bare.group()))
    # keep the outermost boxes; boxes nest like braces, so one pass over the sorted starts does
    outer, reach = [], -1
    for box in found:
        if box[0] >= reach:
            outer.append(box)
            reach = box[1]
    if not outer:
        return None, None
    group = [outer[-1]]  # the last box and the boxes right before it, latest first
    for box in reversed(outer[:-1]):
        between = text[box[1]:group[-1][0]]
        if len(between) > 40 or "\n" in between.strip(" \t") or not _BOX_SEPARATOR_RE.fullmatch(between):
            break
        group.append(box)
    answers = [content.strip() for _, _, content in reversed(group)]
    if len(answers) == 1:
        return answers[0], "boxed"
    return ", ".join(answers), "boxed_multi"


_NEXT_LINE = re.compile(r"\s*([^\n]*)")


def _answer_line(text: str, grader: str) -> str | None:
    pattern = _ANSWER_RE["choice" if grader == "choice" else "default"]
    for match in reversed(list(pattern.finditer(text))):
        end = text.find("\n", match.end())
        end = len(text) if end < 0 else end
        line = _strip_markup(text[match.end():end])
        if not line:  # "Final Answer:\n\n204"
            line = _strip_markup(_NEXT_LINE.match(text, end).group(1))
            if len(line) > BARE_MAX_CHARS:
                line = ""
        if line and not _BOX_RE.search(line):  # a box left unclosed: the answer was cut off
            return line
    return None


def _strip_markup(text: str) -> str:
    """Drop markdown emphasis, display delimiters, a closing full stop and enclosing $...$."""
    text = text.strip().strip("*_ \t").strip()
    text = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", text).strip().rstrip(".。").rstrip()
    dollars = text.count("$")
    if text.startswith("$") and text.endswith("$") and (dollars == 2 or dollars == 4 and text.startswith("$$")):
        text = text.strip("$").strip().rstrip(".").rstrip()
    return text.strip("*_ \t").strip()


def extract(text: str, grader: str) -> tuple[str | None, str | None]:
    """(extracted answer, rule) from an answer segment; (None, None) when there is none."""
    if not text or not text.strip():
        return None, None
    boxed, rule = _boxed(text)
    if boxed is not None and boxed != "":
        return boxed, rule
    line = _answer_line(text, grader)
    if line:
        return line, "answer_line"
    bare = _strip_markup(text)
    if (bare and "\n" not in bare and len(bare) <= BARE_MAX_CHARS and not _BOX_RE.search(bare)
            and (len(bare.split()) <= BARE_MAX_WORDS or bare[0] in "$\\")):
        return bare, "bare"
    return None, None


# --------------------------------------------------------------------------- comparison

_NUMBER_RE = re.compile(
    r"(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)"
    r"(?:\s*(?:\\?%|\^\s*\{?\\circ\}?|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*))?"
)


def _unwrap(text: str) -> str:
    """Plain text of a short LaTeX answer: drop $, \\text{..} wrappers, spacing commands."""
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|textrm|operatorname)\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\[,;:! ]|\\q?quad|\\left|\\right|\{,\}|\\\$|\$", " ", text.replace("\\dfrac", "\\frac"))
    return " ".join(text.split()).strip(" .")


def as_number(text: str) -> Decimal | None:
    """The value of a plain number, ignoring thousands commas and trailing units; else None."""
    plain = re.sub(r"^\(?[A-E]\)\s*", "", _unwrap(text))  # "(D) 1625": an AMC option label
    match = _NUMBER_RE.fullmatch(plain) if len(plain) <= 100 else None
    if not match:
        return None
    try:
        return Decimal(match.group("num").replace(",", ""))
    except InvalidOperation:
        return None


def as_letter(text: str) -> str | None:
    """The option letter an extracted answer names: "(C)", "C", "C) text", "**C**", "Option C"."""
    plain = _unwrap(text).strip("*_ ")
    plain = re.sub(r"^(?:option|choice|answer)\s*[:]?\s*", "", plain, flags=re.I)
    match = re.match(r"^\(?([A-J])\)?(?=$|[\s.):,])", plain) or re.fullmatch(r"\(?([a-j])\)?", plain)
    return match.group(1).upper() if match else None


def _math_verify(gold: str, pred: str, raw: bool) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    targets = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold_parsed = parse(f"${gold}$", extraction_config=targets, parsing_timeout=None)
    # text with math delimiters is searched as is; a bare expression is read as one answer
    pred_parsed = parse(pred if raw else f"\\boxed{{{pred}}}", extraction_config=targets, parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return verify(gold_parsed, pred_parsed, timeout_seconds=None)


def compare(gold: str, extracted: str, grader: str) -> bool:
    gold = str(gold).strip()
    if grader == "choice":
        letter = as_letter(extracted)
        if gold in LETTERS:
            return letter == gold
        return _unwrap(extracted).casefold() == _unwrap(gold).casefold()
    if grader in ("integer", "number"):
        gold_value, value = as_number(gold), as_number(extracted)
        if gold_value is not None and value is not None:
            return gold_value == value
    raw = any(marker in extracted for marker in ("$", "\\(", "\\["))
    return _math_verify(gold, extracted, raw)


def grade_one(gold: str, answer: str, grader: str) -> Verdict:
    """Grade one answer segment in this process, without a time limit (see grade_many)."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    extracted, rule = extract(answer, grader)
    if extracted is None:
        return Verdict("no_answer", None, None)
    return Verdict("correct" if compare(gold, extracted, grader) else "wrong", extracted, rule)


# --------------------------------------------------------------------------- worker pool


class _SoftTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _SoftTimeout


def _serve(conn) -> None:
    """Worker loop: say "ready", then grade (index, gold, answer, grader, limit) tasks until
    None arrives."""
    signal.signal(signal.SIGALRM, _on_alarm)
    grade_one("1", "\\boxed{\\frac{1}{2}}", "math")  # first-use costs before any time limit runs
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        index, gold, answer, grader, limit = task
        extracted = rule = None
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            extracted, rule = extract(answer, grader)
            if extracted is None:
                verdict = Verdict("no_answer", None, None)
            else:
                verdict = Verdict("correct" if compare(gold, extracted, grader) else "wrong", extracted, rule)
        except _SoftTimeout:
            verdict = Verdict("timeout", extracted, rule)
        except RecursionError:  # deeply nested LaTeX: unparsable, not a hang
            verdict = Verdict("wrong", extracted, rule)
        except Exception as error:  # noqa: BLE001 - one odd answer must not stop the others
            verdict = Verdict("wrong", extracted, f"{rule} ({type(error).__name__})")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send((index, verdict))


class _Worker:
    """One grading process. Its time limit starts when a task is sent, and tasks are sent only
    once it has said it is ready, so a slow start is never mistaken for a slow answer."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0

    def send(self, index: int, task: tuple, limit: float) -> None:
        self.conn.send((index, *task, limit))
        self.task, self.deadline = index, time.monotonic() + limit + KILL_GRACE_S

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
                self.process.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _context():
    # forkserver: workers fork from a clean process that has imported this module (and
    # math-verify) once, so replacing a killed worker takes milliseconds, and no thread state
    # of the parent (pyarrow pools) is inherited
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.grading", "math_verify", "sympy"])
    return ctx


def _unfinished(item: tuple[str, str], grader: str) -> Verdict:
    """A timeout verdict for an answer whose worker had to be killed; extraction is linear in
    the text, so it is safe to repeat here for the record."""
    return Verdict("timeout", *extract(item[1] or "", grader))


def grade_many(items: list[tuple[str, str]], grader: str, timeout_s: float = 5.0, workers: int = 0,
               progress=None) -> list[Verdict]:
    """Grade (gold, answer segment) pairs in `workers` processes (0: one per core), each answer
    under a time limit of `timeout_s` seconds; results come back in input order."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    results: list[Verdict | None] = [None] * len(items)
    if not items:
        return []
    ctx = _context()
    pool = [_Worker(ctx) for _ in range(min(workers or available_cores(), len(items)))]
    pending = deque(range(len(items)))
    done = 0

    def finish(index: int, verdict: Verdict) -> None:
        nonlocal done
        results[index] = verdict
        done += 1
        if progress is not None:
            progress(done, len(items))

    try:
        while pending or any(w.task is not None for w in pool):
            for worker in pool:
                if worker.ready and worker.task is None and pending:
                    index = pending.popleft()
                    worker.send(index, (str(items[index][0]), items[index][1] or "", grader), timeout_s)
            waiting = [w for w in pool if not w.ready or w.task is not None]
            deadlines = [w.deadline for w in waiting if w.task is not None]
            ready = set(wait([w.conn for w in waiting],
                             timeout=max(0.0, min(deadlines) - time.monotonic()) if deadlines else None))
            for slot, worker in enumerate(pool):
                if worker.conn in ready:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):  # the worker died (out of memory, a crash)
                        if worker.task is None:
                            raise RuntimeError("a grading worker process failed to start") from None
                        finish(worker.task, _unfinished(items[worker.task], grader))
                        worker.stop(kill=True)
                        pool[slot] = _Worker(ctx)
                        continue
                    if message == "ready":
                        worker.ready = True
                    else:
                        worker.task = None
                        finish(*message)
                elif worker.task is not None and time.monotonic() >= worker.deadline:
                    finish(worker.task, _unfinished(items[worker.task], grader))
                    worker.stop(kill=True)
                    pool[slot] = _Worker(ctx)
    finally:
        for worker in pool:
            worker.stop()
    return results  # type: ignore[return-value]
