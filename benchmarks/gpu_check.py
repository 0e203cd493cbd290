"""One prepared check for a GPU machine: the study's stages on a random-weight 7B, measured, and
the grid's cost recomputed from the measurements.

    python benchmarks/gpu_check.py --out DIR            # Qwen2.5-7B shape on CUDA (about 8 minutes on an H100/H200)
    python benchmarks/gpu_check.py --out DIR --small    # a 2-block Qwen2.5-0.5B shape on the CPU, to test the script

Steps, each the workflow's own stage command run as its own process:
1. build a random-weight model at Qwen2.5-7B's shape (tests/real_shapes.py; no Hub);
2. masks (`--method`: Wanda by default; 50%, 128 x 2048 calibration tokens) block by block on the GPU: time and peak
   GPU memory (torch.cuda.max_memory_allocated of the stage process) and peak RSS;
3. export of the pruned checkpoint: time and size on disk;
4. generation through vLLM (CUDA) with budget forcing at budget 8192 on `--problems` x `--seeds`
   requests: tokens per second and engine start (the job's wall time less its generation phases);
5. `python -m pipeline.cost` on config/config.yaml with these figures (DIR/measured.json), beside
   the estimate from the stated figures.
Writes DIR/gpu_check.json (every measurement), DIR/measured.json, DIR/cost-measured.md and
DIR/cost-stated.md, and prints a summary. The random model never closes its thinking, so every
request runs to the budget: the generation figure is the thinking-bound throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the stage under a wrapper that reports its peaks on exit
PEAKS = ("import atexit, json, runpy, sys\n"
         "def _peaks():\n"
         "    status = open('/proc/self/status').read()\n"
         "    out = {'rss_mib': int(next(l.split()[1] for l in status.splitlines() if l.startswith('VmHWM:'))) / 1024}\n"
         "    torch = sys.modules.get('torch')\n"
         "    if torch is not None and torch.cuda.is_available():\n"
         "        out['gpu_allocated_mib'] = torch.cuda.max_memory_allocated() / 2**20\n"
         "        out['gpu_reserved_mib'] = torch.cuda.max_memory_reserved() / 2**20\n"
         "    print('PEAKS ' + json.dumps(out), file=sys.stderr)\n"
         "atexit.register(_peaks)\n"
         "module = sys.argv[1]\n"
         "sys.argv = [module] + sys.argv[2:]\n"
         "runpy.run_module(module, run_name='__main__')\n")

SIZES = {
    # shape, blocks, device, dtype, calibration samples x length, budget, answer cap, problems, seeds
    "full": dict(shape="qwen2.5-7b", layers=None, device="cuda", dtype="bfloat16", samples=128, length=2048,
                 budget=8192, answer=256, problems=128, seeds=2),
    "small": dict(shape="qwen2.5-0.5b", layers=2, device="cpu", dtype="float32", samples=4, length=64,
                  budget=32, answer=16, problems=3, seeds=1),
}


def stage(module: str, args: list[str], log: Path, env: dict) -> dict:
    """Run `python -m module args`; its wall time, peaks and log."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAKS, module, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}); log: {log}\n{done.stderr[-3000:]}")
    peaks = json.loads(next(line[6:] for line in done.stderr.splitlines() if line.startswith("PEAKS ")))
    return {"seconds": seconds, **peaks}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the model, the artifacts and the figures")
    parser.add_argument("--small", action="store_true", help="a 2-block 0.5B shape on the CPU: tests the script")
    parser.add_argument("--problems", type=int, help="synthetic problems (requests = problems x seeds)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--budget", type=int)
    parser.add_argument("--method", default="wanda", choices=("wanda", "sparsegpt", "magnitude"),
                        help="the pruning method of the masks step (50%% sparsity)")
    parser.add_argument("--no-generate", action="store_true",
                        help="stop after masks and export (a machine without vLLM): the cost uses the masks figure alone")
    args = parser.parse_args(argv)
    size = dict(SIZES["small" if args.small else "full"])
    for key in ("problems", "seeds", "budget"):
        if getattr(args, key):
            size[key] = getattr(args, key)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.small:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    import torch

    from pipeline import cost
    from pipeline.core import config as cfg
    from pipeline.core import slices, specs
    from pipeline.core.artifacts import write_json, write_table
    from tests import real_shapes

    if size["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; run on a GPU machine, or pass --small to test the script on the CPU")
    report: dict = {"size": size, "device": torch.cuda.get_device_name(0) if size["device"] == "cuda" else "cpu"}

    # 1. the model
    model = out / "model"
    start = time.perf_counter()
    if not (model / "config.json").exists():
        real_shapes.build(size["shape"], model, size["layers"], dtype="bfloat16", device=size["device"])
    report["build_s"] = time.perf_counter() - start
    params = real_shapes.parameter_counts(real_shapes.model_config(size["shape"], size["layers"]))["total"]
    report["params"] = params
    report["model_bytes"] = folder_bytes(model)
    print(f"model: {size['shape']} ({params / 1e9:.2f}B, {report['model_bytes'] / 1e9:.1f} GB) in {report['build_s']:.0f} s", flush=True)

    # the workflow's config slices for this model
    problems_file = out / "problems.jsonl"
    problems_file.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Compute {i} + {2 * i + 1}.", "answer": str(3 * i + 1)}) + "\n"
                                     for i in range(size["problems"])))
    config = cfg.prepare({
        "models": {"m": {"path": str(model), "template": "s1", "dtype": size["dtype"], "size_b": params / 1e9}},
        "variants": {"pruned-50": {"method": args.method, "sparsity": 0.5}},
        "benchmarks": {"synthetic": {"file": str(problems_file), "grader": "integer"}},
        "calibration": {"c4": {"source": "file", "path": "unused", "samples": size["samples"], "length": size["length"]}},
        "generation": {"budgets": [size["budget"]], "seeds": list(range(size["seeds"])), "answer_max_tokens": size["answer"],
                       "vllm": {"max_model_len": size["budget"] + size["answer"] + 512, "dtype": size["dtype"],
                                "enforce_eager": args.small}},
        "pruning": {"device": size["device"]},
    })

    # 2. calibration tokens (random ids: the cost depends on the shapes alone) and masks
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    calibration = out / "calibration.parquet"
    write_table(pd.DataFrame({"sample": range(size["samples"]),
                              "input_ids": [rng.integers(0, 512, size["length"], dtype=np.int32).tolist()
                                            for _ in range(size["samples"])]}), calibration)
    masks = out / "masks.parquet"
    report["masks"] = stage("pipeline.stages.masks", ["--model", str(model), "--calibration", str(calibration),
                                               "--spec", specs.canonical_json(slices.mask_slice(config, "m", "pruned-50")),
                                               "--out", str(masks)], out / "masks.log", env)
    print(f"masks: {report['masks']}", flush=True)

    # 3. export
    checkpoint = out / "checkpoint"
    report["export"] = stage("pipeline.stages.export", ["--model", str(model), "--masks", str(masks),
                                                 "--spec", specs.canonical_json(slices.export_slice(config, "m", "pruned-50")),
                                                 "--out", str(checkpoint)], out / "export.log", env)
    report["export"]["bytes"] = folder_bytes(checkpoint)
    print(f"export: {report['export']}", flush=True)

    if args.no_generate:
        flop = 2 * 2 * params * size["samples"] * size["length"]  # the masks stage's two passes
        report["effective_tflops"] = flop / report["masks"]["seconds"] / 1e12
        write_json(report, out / "gpu_check.json")
        print(f"masks at {report['effective_tflops']:.1f} effective TFLOP/s (model load included); "
              f"figures in {out / 'gpu_check.json'}")
        return

    # 4. generation
    benchmark = out / "synthetic.parquet"
    stage("pipeline.stages.benchmark_data", ["--spec", specs.canonical_json(slices.benchmark_slice(config, "synthetic")),
                                  "--out", str(benchmark)], out / "benchmarks.log", env)
    generations = out / "generations.parquet"
    gen = stage("pipeline.stages.generate", ["--model", str(checkpoint), "--benchmark", str(benchmark),
                                      "--spec", specs.canonical_json(slices.generation_slice(config, "m", "pruned-50", "synthetic")),
                                      "--out", str(generations)], out / "generate.log", env)
    table = pd.read_parquet(generations)
    phases = [float(s) for s in re.findall(r"^\[generate\] .*?, ([0-9.]+) s \(", (out / "generate.log").read_text(), re.M)]
    tokens = int(table.thinking_tokens.sum() + table.answer_tokens.sum())
    gen.update({"requests": len(table), "tokens": tokens, "generation_s": sum(phases),
                "tokens_per_s": tokens / sum(phases), "engine_start_s": gen["seconds"] - sum(phases),
                "hit_budget": float(table.hit_budget.mean())})
    report["generate"] = gen
    print(f"generate: {gen}", flush=True)

    # 5. the grid's cost from these figures
    flop = 2 * 2 * params * size["samples"] * size["length"]  # the masks stage's two passes
    measured = {
        "decode_tokens_per_s_8b": {"value": gen["tokens_per_s"] * params / 8e9,
                                   "source": f"benchmarks/gpu_check.py on {report['device']}: {gen['tokens_per_s']:.0f} tok/s "
                                             f"for {params / 1e9:.2f}B, scaled to 8B"},
        "engine_start_s": {"value": gen["engine_start_s"], "source": f"benchmarks/gpu_check.py on {report['device']}"},
        "effective_tflops": {"value": flop / report["masks"]["seconds"] / 1e12,
                             "source": f"benchmarks/gpu_check.py: masks stage on {report['device']}, model load included"},
    }
    write_json(measured, out / "measured.json")
    write_json(report, out / "gpu_check.json")
    for name, figures in (("stated", None), ("measured", out / "measured.json")):
        command = [sys.executable, "-m", "pipeline.cost", "--configfile", "config/config.yaml", "--out", str(out / f"cost-{name}.md")]
        subprocess.run(command + (["--figures", str(figures)] if figures else []), cwd=ROOT, env=env, check=True)
    totals = {name: next(line for line in (out / f"cost-{name}.md").read_text().splitlines() if line.startswith("| **total**"))
              for name in ("stated", "measured")}
    print("\nstudy grid (config/config.yaml), | jobs | GPU-h expected | GPU-h bound | disk GB |")
    for name, line in totals.items():
        print(f"  {name:<9}{line}")
    print(f"\nfigures in {out / 'gpu_check.json'}; cost tables in {out}/cost-*.md")


if __name__ == "__main__":
    main()
