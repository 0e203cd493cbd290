"""Grading many answers in worker processes, each answer under a hard time limit: a worker that
does not come back (stuck inside C code such as sympy's big-integer arithmetic) is killed and
replaced."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from multiprocessing.connection import wait

from pipeline.grading.answers import GRADERS, Verdict, grade_one
from pipeline.grading.comparison import judge
from pipeline.grading.extraction import extract

# seconds a worker may overrun its soft limit before it is killed (a fresh worker forks in
# milliseconds, so there is little to gain from waiting longer)
KILL_GRACE_S = 0.5


class _SoftTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _SoftTimeout


def _serve(conn) -> None:
    """Worker loop: say "ready", then grade (index, gold, answer, grader, choices, limit) tasks
    until None arrives."""
    signal.signal(signal.SIGALRM, _on_alarm)
    grade_one("1", "\\boxed{\\frac{1}{2}}", "math")  # first-use costs before any time limit runs
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        index, gold, answer, grader, choices, limit = task
        extracted = rule = None
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            extracted, rule = extract(answer, grader, choices)
            if extracted is None:
                verdict = Verdict("no_answer", None, None)
            else:
                verdict = Verdict(judge(gold, extracted, grader, choices), extracted, rule)
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
    ctx.set_forkserver_preload(["pipeline.grading.worker_pool", "math_verify", "sympy"])
    return ctx


def _unfinished(item: tuple, grader: str) -> Verdict:
    """A timeout verdict for an answer whose worker had to be killed; extraction is linear in
    the text, so it is safe to repeat here for the record."""
    return Verdict("timeout", *extract(item[1] or "", grader, _choices_of(item)))


def _choices_of(item: tuple) -> list[str] | None:
    return list(item[2]) if len(item) > 2 and item[2] is not None else None


def grade_many(items: list[tuple], grader: str, timeout_s: float = 5.0, workers: int = 0,
               progress=None) -> list[Verdict]:
    """Grade (gold, answer segment) or (gold, answer segment, choices) items in `workers`
    processes (0: one per core), each answer under a time limit of `timeout_s` seconds; results
    come back in input order."""
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
                    item = items[index]
                    worker.send(index, (str(item[0]), item[1] or "", grader, _choices_of(item)), timeout_s)
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
