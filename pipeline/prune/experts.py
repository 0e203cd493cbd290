"""Mixture-of-experts blocks: their experts as ordinary matrices, and the calibration forward.

transformers keeps the experts of an MoE block as 3-D parameters (`gate_up_proj`, `down_proj`:
one slice per expert) in a module marked by `use_experts_implementation`, which records the
layout (`is_transposed`, `is_concatenated`: gate and up halves or interleaved, `has_gate`,
`has_bias`). Pruning sees each expert as the plain matrices it stands for,
`mlp.experts.E.gate_proj`, `.up_proj`, `.down_proj` (out x in), as 2-D views into the 3-D
parameters: writing to a view writes the parameter. These are the names transformers gives the
experts in a saved checkpoint, and llmcompressor's once it unpacks them into linears.

During calibration the experts run as llmcompressor runs them (its LinearExperts2D with
`moe_calibrate_all_experts`, the default of its oneshot): every expert sees every token of the
batch, so its statistics come from all tokens, while the block's output keeps only each
token's routed experts, weighted by the router. gate and up are separate products, then
`_apply_gate` of their concatenation, then down; outputs are summed with index_add_ in expert
order. Routers are not experts and stay dense.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

PARTS = ("gate_proj", "up_proj", "down_proj")


def is_fused_experts(module: nn.Module) -> bool:
    down = getattr(module, "down_proj", None)
    return isinstance(down, nn.Parameter) and down.dim() == 3 and hasattr(module, "is_transposed")


def fused_experts(block: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in block.named_modules() if is_fused_experts(m)]


def _halves(module) -> tuple[slice, slice]:
    """Where gate and up sit along the fused output dimension."""
    if getattr(module, "is_concatenated", True):
        n = module.gate_up_proj.shape[1 if not module.is_transposed else 2] // 2
        return slice(0, n), slice(n, None)
    return slice(0, None, 2), slice(1, None, 2)


def expert_weights(module: nn.Module, e: int) -> dict[str, torch.Tensor]:
    """Expert e's matrices (out x in) as views into the module's 3-D parameters."""
    t = module.is_transposed
    out = {}
    if getattr(module, "has_gate", True):
        gate, up = _halves(module)
        fused = module.gate_up_proj[e]
        out["gate_proj"] = fused[:, gate].T if t else fused[gate]
        out["up_proj"] = fused[:, up].T if t else fused[up]
    else:
        out["up_proj"] = module.up_proj[e].T if t else module.up_proj[e]
    out["down_proj"] = module.down_proj[e].T if t else module.down_proj[e]
    return out


def expert_biases(module: nn.Module, e: int) -> dict[str, torch.Tensor | None]:
    if not getattr(module, "has_bias", False):
        return {}
    out = {"down_proj": module.down_proj_bias[e]}
    if getattr(module, "has_gate", True):
        gate, up = _halves(module)
        out["gate_proj"], out["up_proj"] = module.gate_up_proj_bias[e][gate], module.gate_up_proj_bias[e][up]
    else:
        out["up_proj"] = module.up_proj_bias[e]
    return out


def num_experts(module: nn.Module) -> int:
    return module.down_proj.shape[0]


def matrices(prefix: str, module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """[(f"{prefix}.E.part", view)] for every expert, parts in gate, up, down order."""
    out = []
    for e in range(num_experts(module)):
        out += [(f"{prefix}.{e}.{part}", w) for part, w in expert_weights(module, e).items()]
    return out


def _gate(module, gate: torch.Tensor | None, up: torch.Tensor) -> torch.Tensor:
    if gate is None:
        return module.act_fn(up)
    if getattr(module, "is_concatenated", True):
        return module._apply_gate(torch.cat([gate, up], dim=-1))
    return module._apply_gate(torch.stack([gate, up], dim=-1).flatten(-2))  # interleaved again


def calibration_forward(module: nn.Module, prefix: str, record: Callable[[str, torch.Tensor], None] | None,
                        all_tokens: bool):
    """A forward for `module` (same signature as the experts' own) that runs each expert as
    llmcompressor's unpacked experts do and shows `record(matrix name, input)` every expert
    matrix's input before its product. all_tokens: every expert computes every token (the
    statistics' tokens); otherwise only its routed ones (same output, less work)."""

    def forward(hidden_states, *args, **kwargs):
        top_k_index, top_k_weights = [*args, *kwargs.values()]  # gpt-oss passes them by other names
        out = torch.zeros_like(hidden_states)
        n = num_experts(module)
        with torch.no_grad():
            routed = F.one_hot(top_k_index, n).permute(2, 1, 0)
        if record and all_tokens:  # one input for every gate and up: recorded together, one statistic
            for e in range(n):
                for part in ("gate_proj", "up_proj") if getattr(module, "has_gate", True) else ("up_proj",):
                    record(f"{prefix}.{e}.{part}", hidden_states)
        for e in range(n):
            top_k_pos, tokens = torch.where(routed[e])
            x = hidden_states if all_tokens else hidden_states[tokens]
            w, b = expert_weights(module, e), expert_biases(module, e)
            if record and not all_tokens:
                for part in ("gate_proj", "up_proj") if "gate_proj" in w else ("up_proj",):
                    record(f"{prefix}.{e}.{part}", x)
            gate = F.linear(x, w["gate_proj"], b.get("gate_proj")) if "gate_proj" in w else None
            h = _gate(module, gate, F.linear(x, w["up_proj"], b.get("up_proj")))
            if record:
                record(f"{prefix}.{e}.down_proj", h)
            y = F.linear(h, w["down_proj"], b.get("down_proj"))
            if all_tokens:
                y = y[tokens]
            out.index_add_(0, tokens, (y * top_k_weights[tokens, top_k_pos, None]).to(out.dtype))
        return out

    return forward


@contextlib.contextmanager
def calibrating(block: nn.Module, record=None, all_tokens: bool = True):
    """Within: the block's experts run `calibration_forward` (see there)."""
    patched = []
    for name, module in fused_experts(block):
        module.forward = calibration_forward(module, name, record, all_tokens)
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # the class's forward again
