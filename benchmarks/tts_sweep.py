"""Cost of a budget sweep: one long thinking run per request (ours) against one run per budget
(the reference harness), on the tiny demo model with vLLM, in one process and one engine.

    python benchmarks/tts_sweep.py [--budgets 32 64 128 256 512] [--seeds 8] [--answer-max-tokens 16]

Prints generated tokens, decode steps, wall and CPU time of both ways and their ratios, and
checks that both produce the same budget-forcing structure per row (hit flags, thinking
lengths). On a shared or oversubscribed machine wall and CPU time swing by large factors from
run to run: runs alternate, the fastest of --repeats runs of each way is the estimate, and
decode steps (each batch's longest generation, summed) are the load-independent proxy.
Sampling at temperature 1, the random tiny model ends its thinking by itself in about half of
the rows; budgets whose cut is the same share one answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def problems() -> list[str]:
    texts = []
    for name in ("aime24", "math500", "mcq"):
        with open(ROOT / "config" / "demo" / f"{name}.jsonl") as handle:
            texts += [json.loads(line)["problem"] for line in handle if line.strip()]
    return texts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per problem (9 demo problems)")
    parser.add_argument("--answer-max-tokens", type=int, default=16)
    parser.add_argument("--wait", type=int, default=0, help="Wait rounds")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each way; the fastest counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tts-sweep-") as folder:
        sweep(args, Path(folder))


def sweep(args, folder: Path) -> None:
    from transformers import AutoTokenizer

    from pipeline.generation import budget_forcing as bf
    from pipeline.generation import templates
    from pipeline.generation.vllm_backend import VllmBackend, start_engine
    from pipeline.models import demo_model

    model = demo_model.build(folder, {"architecture": "qwen3"})
    bound = templates.bind(templates.get("qwen3"), AutoTokenizer.from_pretrained(model), model, "Wait")
    requests = [
        bf.Request(problem_id=f"p{i}", seed=seed, sample=0, sample_seed=bf.sample_seed(seed, f"p{i}", 0),
                   prompt_ids=tuple(bound.prompt_ids(text)), gold="", choice_order=None)
        for seed in range(args.seeds) for i, text in enumerate(problems())
    ]
    # room for the longest prompt, the largest budget, the forced-answer delimiter and the answer
    delimiter = max(len(bound.forced_answer_ids), len(bound.answer_start_ids))
    context = max(len(r.prompt_ids) for r in requests) + max(args.budgets) + delimiter + args.answer_max_tokens
    bf.check_lengths(requests, bound, args.budgets, args.answer_max_tokens, context)
    llm = start_engine(model, "float32",
                       {"max_model_len": context, "enforce_eager": True, "enable_prefix_caching": True})
    backend = VllmBackend(llm, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0})
    # warm-up over the full batch (new batch shapes are slow the first time), not timed
    bf.run(backend, bound, requests, [16], 4, [0], bf.Tally(quiet=True))

    plans = {"reference": bf.run_per_budget, "ours": bf.run}
    order = [name for r in range(args.repeats) for name in (("reference", "ours"), ("ours", "reference"))[r % 2]]
    results = {}
    for name in order:  # alternating, so drifting machine load hurts neither way more
        llm.reset_prefix_cache()  # neither way profits from the other's cache
        tally = bf.Tally(quiet=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        rows = plans[name](backend, bound, requests, args.budgets, args.answer_max_tokens, [args.wait], tally)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"{name:>9}: {tally.tokens} tokens, {tally.steps} steps, wall {wall:.1f} s, cpu {cpu:.1f} s", flush=True)
        best = results.get(name, (0, 0, wall, cpu, rows))
        results[name] = (tally.tokens, tally.steps, min(wall, best[2]), min(cpu, best[3]), rows)

    def structure(rows):
        return sorted((r["problem_id"], r["seed"], r["budget"], r["hit_budget"], r["thinking_tokens"]) for r in rows)

    (ref_tokens, ref_steps, ref_wall, ref_cpu, ref_rows) = results["reference"]
    (our_tokens, our_steps, our_wall, our_cpu, our_rows) = results["ours"]
    natural = sum(not r["hit_budget"] for r in our_rows)
    print(f"requests {len(requests)}, budgets {args.budgets}, answer cap {args.answer_max_tokens}, "
          f"Wait rounds {args.wait}; rows ended before their budget: {natural}/{len(our_rows)}")
    print(f"generated tokens  ours {our_tokens:>8}  reference {ref_tokens:>8}  ratio {our_tokens / ref_tokens:.3f}")
    print(f"decode steps      ours {our_steps:>8}  reference {ref_steps:>8}  ratio {our_steps / ref_steps:.3f}")
    print(f"wall time (s)     ours {our_wall:>8.1f}  reference {ref_wall:>8.1f}  ratio {our_wall / ref_wall:.3f}")
    print(f"cpu time (s)      ours {our_cpu:>8.1f}  reference {ref_cpu:>8.1f}  ratio {our_cpu / ref_cpu:.3f}")
    print(f"same structure per row (hit flags, thinking lengths): {structure(our_rows) == structure(ref_rows)}")


if __name__ == "__main__":
    main()
