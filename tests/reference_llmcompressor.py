"""Run llmcompressor's one-shot Wanda or SparseGPT on a saved model; runs in the reference
environment (.venv-ref), never imports the pipeline package.

    python reference_llmcompressor.py --model DIR --samples SAMPLES.json --method wanda
        --sparsity 0.5 | '[0.3, 0.5]' [--nm 2:4] --out RESULT.npz
    python reference_llmcompressor.py --jobs JOBS.json

SAMPLES.json: a list of token-id lists (all the same length). RESULT.npz holds the pruned
weight of every linear of every decoder block as "BLOCK.NAME" (fp32; a mixture-of-experts
model's experts, which llmcompressor unpacks into linears before calibrating, as
"BLOCK.mlp.experts.E.gate_proj" and so on), plus "seconds" (the
oneshot call), "peak_rss_mb" (this process) and "import_rss_mb" (its resident memory once the
libraries are imported, before the model is loaded).

JOBS.json: a list of {"model", "samples", "method", "sparsity", "nm", "out"} (the options
above; sparsity a number or a list, nm optional), run in turn in this one process, which
pays the ~10 s of imports once rather than per job. Each job starts from a fresh
llmcompressor session and torch's start-up random state, so its result is the one a lone
run gives. Before each job a line "=== job I ===" goes to stderr, so a caller can tell
which job a message (or a failure's traceback) belongs to; a failed job writes no RESULT,
the next jobs still run, and the exit status is 1. peak_rss_mb is then this process's peak
so far (the speed benchmark, which needs a job's own figures, runs one job per process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import numpy as np


BLOCK_CLASSES = {"llama": "LlamaDecoderLayer", "qwen2": "Qwen2DecoderLayer", "qwen3": "Qwen3DecoderLayer",
                 "qwen3_moe": "Qwen3MoeDecoderLayer", "mixtral": "MixtralDecoderLayer",
                 "gemma3_text": "Gemma3DecoderLayer", "mistral": "MistralDecoderLayer", "phi3": "Phi3DecoderLayer"}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def prune(model_dir: str, samples_path: str, method: str, sparsity, nm: str, out: str, import_rss_mb: float) -> None:
    """One oneshot run; writes RESULT.npz to `out`. The libraries are already imported."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier
    from transformers import AutoConfig, AutoTokenizer

    samples = json.load(open(samples_path))
    config = AutoConfig.from_pretrained(model_dir)
    # target the decoder blocks: a list of sparsities is then one per block, and lm_head stays
    block_class = BLOCK_CLASSES[config.model_type]
    modifier = WandaPruningModifier if method == "wanda" else SparseGPTModifier
    recipe = modifier(sparsity=sparsity, mask_structure=nm, targets=[block_class])
    dataset = Dataset.from_dict({"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]})
    start = time.perf_counter()
    model = oneshot(
        model=model_dir, tokenizer=AutoTokenizer.from_pretrained(model_dir), dataset=dataset, recipe=recipe,
        num_calibration_samples=len(samples), max_seq_length=max(map(len, samples)),
        shuffle_calibration_samples=False, pipeline="sequential", precision="float32",
    )
    seconds = time.perf_counter() - start
    result = {"seconds": np.array(seconds),
              "peak_rss_mb": np.array(peak_rss_mb()),
              "import_rss_mb": np.array(import_rss_mb)}
    for b, block in enumerate(model.model.layers):
        for name, module in block.named_modules():
            if isinstance(module, torch.nn.Linear):
                result[f"{b}.{name}"] = module.weight.detach().float().numpy()
    np.savez(out, **result)


def run_jobs(jobs: list[dict], import_rss_mb: float) -> int:
    """Run every job in turn; the number that failed (their tracebacks on stderr)."""
    import torch
    from llmcompressor.core import create_session

    # a lone run starts from torch's default seed: give every job that same random state
    rng_state = torch.random.get_rng_state()
    failed = 0
    for i, job in enumerate(jobs):
        print(f"=== job {i} ===", file=sys.stderr, flush=True)
        torch.random.set_rng_state(rng_state)
        try:
            # oneshot keeps its modifiers and lifecycle in the active (global) session;
            # a fresh session per job leaves nothing of the previous job in play
            with create_session():
                prune(job["model"], job["samples"], job["method"], job["sparsity"], job.get("nm", "0:0"),
                      job["out"], import_rss_mb)
        except Exception:
            traceback.print_exc()
            failed += 1
        sys.stderr.flush()
    return failed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", help="JOBS.json: run these jobs in one process (no other option then)")
    parser.add_argument("--model")
    parser.add_argument("--samples")
    parser.add_argument("--method", choices=["wanda", "sparsegpt"])
    parser.add_argument("--sparsity", help="a fraction or a JSON list, one per block")
    parser.add_argument("--nm", default="0:0")
    parser.add_argument("--out")
    args = parser.parse_args()
    single = [args.model, args.samples, args.method, args.sparsity, args.out]
    if args.jobs and any(single):
        parser.error("--jobs takes no other option")
    if not args.jobs and not all(single):
        parser.error("--model, --samples, --method, --sparsity and --out are required without --jobs")

    import torch  # noqa: F401
    from datasets import Dataset  # noqa: F401
    from llmcompressor import oneshot  # noqa: F401
    from llmcompressor.modifiers.pruning import WandaPruningModifier  # noqa: F401
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier  # noqa: F401
    from transformers import AutoConfig, AutoTokenizer, PreTrainedModel  # noqa: F401 (imports the model code)

    import_rss_mb = peak_rss_mb()
    if args.jobs:
        sys.exit(1 if run_jobs(json.load(open(args.jobs)), import_rss_mb) else 0)
    prune(args.model, args.samples, args.method, json.loads(args.sparsity), args.nm, args.out, import_rss_mb)


if __name__ == "__main__":
    main()
