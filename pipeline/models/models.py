"""Base models: where their weights live, and loading them.

A model is named in config by exactly one of `hub` (a Hugging Face Hub id), `path` (a local
folder) or `demo` (a tiny random model built offline). The `base_model` stage resolves it once
to a local folder and records that in a small manifest, results/models/{model}/model.json;
every later stage reads the manifest, never the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def model_dir(manifest: str | Path) -> Path:
    """The local folder holding the weights that a manifest (or a checkpoint folder) names."""
    manifest = Path(manifest)
    if manifest.is_dir():
        return manifest
    path = Path(json.loads(manifest.read_text())["path"]).expanduser()
    return path if path.is_absolute() else manifest.parent / path


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_model(path: str | Path, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM for pruning: eval mode, no KV cache, on `device`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir(path), dtype=torch_dtype(dtype))
    model.config.use_cache = False
    return model.to(device).eval()


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir(path))


def decoder_layers(model):
    """The ModuleList of decoder blocks (Llama, Qwen2, Qwen3 and their relatives)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__}: cannot find model.layers; only decoder-only models with model.model.layers are supported")
    return layers


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("pruning.device is cuda but no GPU is visible; set pruning.device: cpu or auto")
    return name
