"""Run llmcompressor's one-shot Wanda or SparseGPT on a saved model; runs in the reference
environment (.venv-ref), never imports the pipeline package.

    python reference_llmcompressor.py --model DIR --samples SAMPLES.json --method wanda
        --sparsity 0.5 | '[0.3, 0.5]' [--nm 2:4] --out RESULT.npz

SAMPLES.json: a list of token-id lists (all the same length). RESULT.npz holds the pruned
weight of every linear of every decoder block as "BLOCK.NAME" (fp32; a mixture-of-experts
model's experts, which llmcompressor unpacks into linears before calibrating, as
"BLOCK.mlp.experts.E.gate_proj" and so on), plus "seconds" (the
oneshot call), "peak_rss_mb" (this process) and "import_rss_mb" (its resident memory once the
libraries are imported, before the model is loaded).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


BLOCK_CLASSES = {"llama": "LlamaDecoderLayer", "qwen2": "Qwen2DecoderLayer", "qwen3": "Qwen3DecoderLayer",
                 "qwen3_moe": "Qwen3MoeDecoderLayer", "mixtral": "MixtralDecoderLayer",
                 "gemma3_text": "Gemma3DecoderLayer", "mistral": "MistralDecoderLayer", "phi3": "Phi3DecoderLayer"}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--method", choices=["wanda", "sparsegpt"], required=True)
    parser.add_argument("--sparsity", required=True, help="a fraction or a JSON list, one per block")
    parser.add_argument("--nm", default="0:0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier
    from transformers import AutoConfig, AutoTokenizer, PreTrainedModel  # noqa: F401 (imports the model code)

    import_rss_mb = peak_rss_mb()
    samples = json.load(open(args.samples))
    sparsity = json.loads(args.sparsity)
    config = AutoConfig.from_pretrained(args.model)
    # target the decoder blocks: a list of sparsities is then one per block, and lm_head stays
    block_class = BLOCK_CLASSES[config.model_type]
    modifier = WandaPruningModifier if args.method == "wanda" else SparseGPTModifier
    recipe = modifier(sparsity=sparsity, mask_structure=args.nm, targets=[block_class])
    dataset = Dataset.from_dict({"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]})
    start = time.perf_counter()
    model = oneshot(
        model=args.model, tokenizer=AutoTokenizer.from_pretrained(args.model), dataset=dataset, recipe=recipe,
        num_calibration_samples=len(samples), max_seq_length=max(map(len, samples)),
        shuffle_calibration_samples=False, pipeline="sequential", precision="float32",
    )
    seconds = time.perf_counter() - start
    out = {"seconds": np.array(seconds),
           "peak_rss_mb": np.array(peak_rss_mb()),
           "import_rss_mb": np.array(import_rss_mb)}
    for b, block in enumerate(model.model.layers):
        for name, module in block.named_modules():
            if isinstance(module, torch.nn.Linear):
                out[f"{b}.{name}"] = module.weight.detach().float().numpy()
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()
