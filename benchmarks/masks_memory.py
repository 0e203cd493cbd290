"""Peak memory of the masks stage against model size: it must follow one block, not the model.

    python benchmarks/masks_memory.py [--sizes qwen2.5-0.5b:4 qwen2.5-0.5b:12 qwen2.5-0.5b:24]
                                      [--method wanda] [--samples 8 --length 128] [--workdir DIR]

Each size is SHAPE:LAYERS, a random-weight model at a real shape (tests/real_shapes.py) with
that many blocks: growing depth grows the model while its blocks stay alike, a wider shape
grows the block. For each, `python -m pipeline.stages.masks` runs as the workflow runs it (its own
process, the model read block by block from safetensors, float32) and reports its peak resident
memory (VmHWM). The estimate beside it: the libraries (the peak of a process that imports what
the stage imports), the larger of one block and the embedding (the stage embeds the calibration
tokens first, then walks the blocks) in float32 plus its bfloat16 copy read from disk (both
exist while a tensor is converted), and the activations (the calibration hidden states into
and out of a block, plus one sequence's MLP intermediate). The ratio peak/estimate should stay
near 1 at every size, and the peak flat while depth grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the stage's entry point under a wrapper that prints the process's peak RSS on exit
PEAK = ("import atexit, runpy, sys\n"
        "def _peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    print('VMHWM_KB', next(l.split()[1] for l in status.splitlines() if l.startswith('VmHWM:')), file=sys.stderr)\n"
        "atexit.register(_peak)\n")
LIBRARIES = PEAK + ("from pipeline.core.environment import lean_process\nlean_process()\n"
                    "import torch, transformers, pandas, pyarrow.parquet\n"
                    "import pipeline.stages.masks, pipeline.models.lazy_model, pipeline.prune.driver\n")


def run_peak(code: str, args: list[str], env: dict) -> tuple[float, float, str]:
    """(peak MiB, seconds, stderr) of `python -c code args`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed:\n{done.stderr[-3000:]}")
    kb = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("VMHWM_KB"))
    return kb / 1024, seconds, done.stderr


def shape_bytes(folder: Path, samples: int, length: int) -> dict:
    """Parameters of the model, of its largest block and of its embedding, and the activation
    bytes, from config.json (meta device)."""
    import torch
    import transformers

    from pipeline.models.models import decoder_layers

    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    block = max(sum(p.numel() for p in b.parameters()) for b in decoder_layers(model))
    embedding = model.get_input_embeddings().weight.numel()
    inter = getattr(config, "intermediate_size", 0)
    activations = 4 * (2 * samples * length * config.hidden_size + 3 * length * inter)
    return {"params": sum(p.numel() for p in model.parameters()), "block": block, "embedding": embedding,
            "activations": activations}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["qwen2.5-0.5b:4", "qwen2.5-0.5b:12", "qwen2.5-0.5b:24"])
    parser.add_argument("--method", default="wanda", choices=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--workdir", help="keep the built models here (reused when present)")
    parser.add_argument("--mmap-threshold", type=int, help="run the stage with MALLOC_MMAP_THRESHOLD_ set to this "
                        "many bytes: glibc's dynamic threshold otherwise lets freed blocks fragment its heap")
    args = parser.parse_args(argv)
    from tests import real_shapes

    work = Path(args.workdir or tempfile.mkdtemp(prefix="masks-memory-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    libraries, _, _ = run_peak(LIBRARIES, [], env)
    print(f"libraries (peak RSS of a process importing the stage's modules): {libraries:.0f} MiB", flush=True)
    header = (f"{'size':<20} {'params':>8} {'peak MiB':>9} {'block MiB':>10} {'embed MiB':>10} "
              f"{'activ MiB':>10} {'estimate':>9} {'ratio':>6} {'time s':>7}")
    rows = []
    for size in args.sizes:
        name, _, layers = size.partition(":")
        folder = work / size.replace(":", "-")
        if not (folder / "config.json").exists():
            real_shapes.build(name, folder, int(layers) if layers else None, dtype="bfloat16")
        calibration = folder / "calibration.parquet"
        if not calibration.exists():
            spec = {"model": {"name": size, "path": str(folder)},
                    "calibration": {"source": "file", "path": str(ROOT / "config/demo/calibration.txt"),
                                    "samples": args.samples, "length": args.length, "seed": 0}}
            subprocess.run([sys.executable, "-m", "pipeline.stages.calibration", "--model", str(folder), "--spec", json.dumps(spec),
                            "--out", str(calibration)], check=True, env=env, cwd=ROOT, capture_output=True)
        prune = {"method": args.method, "sparsity": 0.5, "allocation": "uniform"}
        spec = {"model": {"name": size, "path": str(folder)}, "dtype": "float32", "variant": f"{args.method}-50",
                "prune": prune, "device": "cpu"}
        stage = ["--model", str(folder), "--spec", json.dumps(spec), "--out", str(folder / "masks.parquet")]
        if args.method != "magnitude":
            stage[2:2] = ["--calibration", str(calibration)]
        code = PEAK + "sys.argv = ['pipeline.stages.masks'] + sys.argv[1:]\nrunpy.run_module('pipeline.stages.masks', run_name='__main__')\n"
        peak, seconds, _ = run_peak(code, stage, env)
        sizes = shape_bytes(folder, args.samples, args.length)
        mib = {key: value * 4 / 2**20 for key, value in sizes.items() if key != "activations"}
        activations = sizes["activations"] / 2**20
        estimate = libraries + 1.5 * max(mib["block"], mib["embedding"]) + activations
        rows.append(f"{size:<20} {sizes['params'] / 1e9:>7.3f}B {peak:>9.0f} {mib['block']:>10.0f} {mib['embedding']:>10.0f} "
                    f"{activations:>10.1f} {estimate:>9.0f} {peak / estimate:>6.2f} {seconds:>7.1f}")
        print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
        print(rows[-1], flush=True)
    print(f"\n{args.method} 50%, {args.samples} x {args.length} calibration tokens, float32 on CPU, "
          f"MALLOC_MMAP_THRESHOLD_={env.get('MALLOC_MMAP_THRESHOLD_', 'unset')}; "
          "model weights on disk in bfloat16.\nestimate = libraries + 1.5 x max(block, embedding) (float32 and its "
          "bfloat16 source) + activations.")


if __name__ == "__main__":
    main()
