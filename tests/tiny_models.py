"""Tiny random mixture-of-experts, mixed-attention and fused-projection (Phi3) models, built
offline for tests.

    build(folder, "qwen3_moe" | "mixtral" | "gpt_oss" | "gemma3_text" | "phi3", **overrides) -> folder

Each is saved as transformers saves it (MoE experts one 2-D tensor per expert), with the demo
tokenizer. Shapes are small but keep what matters: several experts with top-k routing, a
moe_intermediate_size different from the hidden size, Gemma3's sliding : full pattern with
a window shorter than the test sequences.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("qwen3_moe", "mixtral", "gpt_oss", "gemma3_text", "phi3")


def config(architecture: str, **overrides):
    import transformers

    common = dict(vocab_size=512, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=None,
                  eos_token_id=1, pad_token_id=0, initializer_range=0.05)
    if architecture == "qwen3_moe":
        kwargs = dict(common, num_hidden_layers=3, head_dim=16, intermediate_size=96, moe_intermediate_size=32,
                      num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)
        kwargs.update(overrides)
        return transformers.Qwen3MoeConfig(**kwargs)
    if architecture == "mixtral":
        kwargs = dict(common, num_hidden_layers=3, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2)
        kwargs.update(overrides)
        return transformers.MixtralConfig(**kwargs)
    if architecture == "gpt_oss":
        kwargs = dict(common, num_hidden_layers=2, head_dim=16, intermediate_size=32, num_local_experts=4,
                      num_experts_per_tok=2, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        kwargs.update(overrides)
        return transformers.GptOssConfig(**kwargs)
    if architecture == "gemma3_text":
        # 6 blocks: 5 sliding, 1 full (Gemma3's pattern), window 8 < the test sequences
        kwargs = dict(common, num_hidden_layers=6, head_dim=16, intermediate_size=128, sliding_window=8,
                      query_pre_attn_scalar=16)
        kwargs.update(overrides)
        return transformers.Gemma3TextConfig(**kwargs)
    if architecture == "phi3":  # fused qkv_proj and gate_up_proj
        kwargs = dict(common, hidden_size=128, num_hidden_layers=4, intermediate_size=256)
        kwargs.update(overrides)
        return transformers.Phi3Config(**kwargs)
    raise ValueError(f"unknown tiny architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")


def build(folder, architecture: str, seed: int = 0, **overrides) -> Path:
    import torch
    import transformers

    from pipeline.models.demo_model import build_tokenizer

    folder = Path(folder)
    cfg = config(architecture, **overrides)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    with torch.no_grad():  # routers start at zero (every token ties): give them random weights
        for name, p in model.named_parameters():
            if name.endswith(("mlp.gate.weight", "router.weight")):
                p.normal_(0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    build_tokenizer(cfg.vocab_size, seed).save_pretrained(folder)
    return folder
