"""Models whose decoder blocks stay on disk until a pass over them needs them.

The masks and statistics stages walk the decoder one block at a time. With an ordinary load,
every block they have visited stays resident (memory-mapped checkpoint pages count as the
process's memory once read), so their peak memory is the whole model. `load_lazily` builds
the model with its blocks' parameters on the meta device; `load(block)` reads one block's
tensors from the safetensors checkpoint and `release(block)` drops them once the pass is done
with it (the driver does both). The token embeddings are handled the same way (needed only
while the calibration inputs are embedded); the final norm is read at once; lm_head, which
pruning never runs, is not read at all. Modules of an ordinarily loaded model pass through
`load` and `release` untouched.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.models.models import decoder_layers, load_model, model_dir, torch_dtype

_SOURCE = "_prune_tts_checkpoint"  # on a lazily loaded block: (key prefix, tensor -> file, dtype)


def checkpoint_index(folder: Path) -> dict[str, Path]:
    """{tensor name: safetensors file} of a checkpoint folder (sharded or not)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        return {key: folder / name for key, name in json.loads(index.read_text())["weight_map"].items()}
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            out.update(dict.fromkeys(handle.keys(), file))
    return out


# Mixture-of-experts checkpoints keep one 2-D tensor per expert and projection, under the names
# of the original modules (Qwen-MoE: mlp.experts.E.gate_proj; Mixtral: block_sparse_moe.experts.E.w1);
# transformers fuses them into 3-D parameters as it loads. The same fusion, for one block:
# {fused parameter: [(parts concatenated along dim 0 per expert)]} in the checkpoint's spellings.
_EXPERT_PARTS = {
    "gate_up_proj": [("gate_proj", "up_proj"), ("w1", "w3")],
    "down_proj": [("down_proj",), ("w2",)],
    "up_proj": [("up_proj",)],
}
_MODULE_SPELLINGS = ((".mlp.", ".mlp."), (".mlp.", ".block_sparse_moe."))


def _source(key: str, index: dict[str, Path]) -> str | list[list[str]] | None:
    """Where the model tensor `key` is in the checkpoint: its name there, or [[names to
    concatenate] per expert] to stack, or None when the checkpoint lacks it."""
    if key in index:
        return key
    for ours, theirs in _MODULE_SPELLINGS:
        spelt = key.replace(ours, theirs)
        if spelt in index:
            return spelt
        head, _, param = spelt.rpartition(".")
        if not head.endswith("experts"):
            continue
        for parts in _EXPERT_PARTS.get(param, []):
            experts = []
            while all(f"{head}.{len(experts)}.{p}.weight" in index for p in parts):
                experts.append([f"{head}.{len(experts)}.{p}.weight" for p in parts])
            if experts:
                return experts
    return None


def _read(module: nn.Module, prefix: str, index: dict[str, Path], dtype) -> None:
    from safetensors import safe_open

    plans = {name: _source(prefix + name, index) for name in module.state_dict()}
    by_file: dict[Path, set[str]] = {}
    for plan in plans.values():
        for key in [plan] if isinstance(plan, str) else (k for parts in plan for k in parts):
            by_file.setdefault(index[key], set()).add(key)
    raw = {}
    for file, keys in by_file.items():  # each file is mapped only while its tensors are copied out
        with safe_open(file, framework="pt") as handle:
            raw.update({key: handle.get_tensor(key).to(dtype) for key in keys})
    tensors = {}
    for name, plan in plans.items():
        if isinstance(plan, str):
            tensors[name] = raw.pop(plan)
        else:  # experts: concatenate each expert's parts, stack the experts
            tensors[name] = torch.stack([torch.cat([raw.pop(k) for k in parts]) for parts in plan])
    module.load_state_dict(tensors, assign=True)


def load_lazily(path, dtype: str = "float32"):
    """The model at `path` with its decoder blocks unread (see the module docstring). Falls back
    to an ordinary load when the checkpoint is not safetensors named like the model's modules."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, dtype_ = model_dir(path), torch_dtype(dtype)
    index = checkpoint_index(folder)
    with init_empty_weights():  # parameters on meta; buffers (rotary frequencies) computed as usual
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype_)
    layers = decoder_layers(model)
    prefixes = [f"model.layers.{i}." for i in range(len(layers))]
    wanted = [p + n for p, b in zip(prefixes, layers) for n in b.state_dict()] + ["model.embed_tokens.weight"]
    missing = [key for key in wanted if _source(key, index) is None]
    if missing:
        warnings.warn(f"{folder}: {'no safetensors files' if not index else f'no tensor {missing[0]}'}; "
                      "reading the whole model into memory", stacklevel=2)
        return load_model(path, dtype=dtype)
    for prefix, block in zip(prefixes, layers):
        setattr(block, _SOURCE, (prefix, index, dtype_))
    for name, child in model.model.named_children():
        if name == "embed_tokens":
            setattr(child, _SOURCE, ("model.embed_tokens.", index, dtype_))
        elif child is not layers:
            _read(child, f"model.{name}.", index, dtype_)
    model.config.use_cache = False
    return model.eval()


def load(block: nn.Module) -> None:
    """Read a lazily loaded block's (or the embeddings') weights if they are not in memory."""
    source = getattr(block, _SOURCE, None)
    if source and any(p.is_meta for p in block.parameters()):
        _read(block, *source)


def release(block: nn.Module) -> bool:
    """Drop a lazily loaded block's weights (True), or leave an ordinary block alone (False)."""
    if getattr(block, _SOURCE, None) is None:
        return False
    block.to_empty(device="meta")
    return True


@contextlib.contextmanager
def loaded(block: nn.Module):
    """The block's weights in memory for the duration (read and released again if lazy)."""
    load(block)
    try:
        yield block
    finally:
        release(block)
