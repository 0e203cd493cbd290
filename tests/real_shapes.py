"""Random-weight models at the shapes of real ones, built offline (no Hub).

    python -m tests.real_shapes NAME OUT_DIR [--layers N] [--dtype bfloat16] [--device cpu]

NAME is one of SHAPES. The config (depth, width, heads, KV heads, head size, MLP or expert
sizes, vocabulary rows, tied or untied embeddings, RoPE base) is the published config.json's;
only the weights are random and the tokenizer is the demo's small byte-level BPE with the
same special tokens (its ids all fall inside the real vocabulary, so the embedding keeps its
real shape). `--layers` builds fewer blocks of the same shape: every block is alike, so the
per-block cost scales and the model fits a small machine.

Sources of the values (each model's config.json and model card on the Hugging Face Hub):
- Qwen/Qwen2.5-0.5B: 24 layers, hidden 896, 14 heads, 2 KV heads, intermediate 4864, vocab
  151936, tied embeddings, rope_theta 1e6, QKV bias. Card: 0.49B parameters, 0.36B non-embedding.
- Qwen/Qwen3-0.6B: 28 layers, hidden 1024, 16 heads, 8 KV heads, head_dim 128, intermediate
  3072, vocab 151936, tied, rope_theta 1e6, QK norm. Card: 0.6B, 0.44B non-embedding.
- Qwen/Qwen3-30B-A3B (the smallest Qwen3 mixture-of-experts): 48 layers, hidden 2048, 32 heads,
  4 KV heads, head_dim 128, 128 experts of moe_intermediate 768, 8 per token, norm_topk_prob,
  vocab 151936, untied, rope_theta 1e6. Card: 30.5B total, 3.3B activated, 29.9B non-embedding.
- Qwen/Qwen2.5-7B (the shape of simplescaling/s1.1-7B): 28 layers, hidden 3584, 28 heads,
  4 KV heads, intermediate 18944, vocab 152064, untied, rope_theta 1e6. Card: 7.61B, 6.53B
  non-embedding.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROPE = {"rope_theta": 1000000.0, "rope_type": "default"}

# name -> (architecture, config.json values, published totals in billions)
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": {
        "architecture": "qwen2",
        "config": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                       max_position_embeddings=32768, rms_norm_eps=1e-6),
        "published": {"total": 0.49, "non_embedding": 0.36},
    },
    "qwen3-0.6b": {
        "architecture": "qwen3",
        "config": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                       max_position_embeddings=40960, rms_norm_eps=1e-6),
        "published": {"total": 0.6, "non_embedding": 0.44},
    },
    "qwen3-30b-a3b": {
        "architecture": "qwen3_moe",
        "config": dict(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                       num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                       num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                       vocab_size=151936, tie_word_embeddings=False, max_position_embeddings=40960,
                       rms_norm_eps=1e-6),
        "published": {"total": 30.5, "non_embedding": 29.9, "activated": 3.3},
    },
    "qwen2.5-7b": {
        "architecture": "qwen2",
        "config": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                       max_position_embeddings=32768, rms_norm_eps=1e-6),
        "published": {"total": 7.61, "non_embedding": 6.53},
    },
}


def model_config(name: str, layers: int | None = None, **overrides):
    """The transformers config of shape `name`, optionally with fewer blocks."""
    import transformers

    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}")
    shape = SHAPES[name]
    values = {**shape["config"], "rope_parameters": dict(ROPE), **overrides}
    if layers is not None:
        values["num_hidden_layers"] = layers
    config_class = {"qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config,
                    "qwen3_moe": transformers.Qwen3MoeConfig}[shape["architecture"]]
    return config_class(**values)


def model_class(config):
    import transformers

    return {"qwen2": transformers.Qwen2ForCausalLM, "qwen3": transformers.Qwen3ForCausalLM,
            "qwen3_moe": transformers.Qwen3MoeForCausalLM}[config.model_type]


def parameter_counts(config) -> dict[str, int]:
    """Total, non-embedding (without embed_tokens and an untied lm_head) and, for a
    mixture of experts, activated parameters per token; counted on the meta device."""
    import torch

    with torch.device("meta"):
        model = model_class(config)(config)
    total = sum(p.numel() for p in model.parameters())  # a tied lm_head is one parameter
    embedding = model.get_input_embeddings().weight.numel()
    head = 0 if config.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    counts = {"total": total, "non_embedding": total - embedding - head}
    experts = getattr(config, "num_experts", None)
    if experts:
        expert_params = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
        counts["activated"] = total - expert_params + expert_params * config.num_experts_per_tok // experts
    return counts


def build(name: str, out_dir: str | Path, layers: int | None = None, dtype: str = "bfloat16",
          device: str = "cpu", seed: int = 0) -> Path:
    """Write a random-weight model of shape `name` (optionally `layers` blocks) with the demo's
    tokenizer; weights saved in `dtype` (bfloat16 as the published checkpoints)."""
    import torch

    from pipeline.models.demo_model import build_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(512, seed, default_system=SHAPES[name]["architecture"] == "qwen2")
    config = model_config(
        name, layers,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), bos_token_id=None,
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # initialise in the saved dtype: half the memory
    try:
        with torch.device(device):
            model = model_class(config)(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "real_shape.json").write_text(json.dumps({"shape": name, "layers": config.num_hidden_layers,
                                                         "dtype": dtype, "seed": seed}, indent=2) + "\n")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(SHAPES))
    parser.add_argument("out_dir")
    parser.add_argument("--layers", type=int, help="fewer blocks of the same shape")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--device", default="cpu", help="where to initialise the weights (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.name, args.out_dir, args.layers, args.dtype, args.device, args.seed))


if __name__ == "__main__":
    main()
