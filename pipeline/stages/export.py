"""Stage: write a pruned checkpoint that transformers and vLLM load.

    python -m pipeline.stages.export --model results/models/M/model.json --masks results/masks/M/V.parquet
        --spec JSON --out results/checkpoints/M/V

`spec` is pipeline.core.slices.export_slice(): {model, dtype, variant}. Unstructured masks zero the
marked weights (SparseGPT's rows carry the updated weights, which replace the matrix); a
structured table removes its blocks and renumbers the rest. The folder gets safetensors,
config, generation config, tokenizer and chat template, plus prune_tts.json (the spec and the
masks' provenance); it appears complete or not at all.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from pipeline.core import config
from pipeline.core.artifacts import atomic_dir, iter_tables, read_provenance, spec_argument
from pipeline.models.models import decoder_layers, load_model, load_tokenizer, model_dir
from pipeline.prune import driver
from pipeline.prune.structured import remove_blocks

# files of the base model that save_pretrained may not reproduce byte for byte
KEEP_FILES = ("generation_config.json", "chat_template.jinja", "chat_template.json")


def unpack(row) -> np.ndarray:
    n = int(row.rows) * int(row.cols)
    return np.unpackbits(np.frombuffer(row.zeroed, dtype=np.uint8), count=n).astype(bool).reshape(int(row.rows), int(row.cols))


def apply_masks(model, table) -> None:
    """Apply a masks table to `model` in place."""
    if "removed" in table:
        remove_blocks(model, [int(b) for b in table.block[table.removed]])
        return
    layers = decoder_layers(model)
    with torch.no_grad():
        for row in table.itertuples():
            weight = driver.matrix(layers[int(row.block)], row.name)
            if tuple(weight.shape) != (row.rows, row.cols):
                raise ValueError(f"masks for block {row.block} {row.name} are {row.rows}x{row.cols}; the model's "
                                 f"matrix is {tuple(weight.shape)}: masks and model do not belong together")
            zeroed = torch.from_numpy(unpack(row)).to(weight.device)
            if row.values is not None:  # the surviving weights, as the method updated them, in row-major order
                if len(row.values) != int((~zeroed).sum()) * weight.element_size():
                    raise ValueError(f"block {row.block} {row.name}: stored values do not match dtype {weight.dtype}; "
                                     "compute masks and export with the same dtype")
                weight.masked_scatter_(~zeroed, torch.frombuffer(bytearray(row.values), dtype=weight.dtype).to(weight.device))
            weight.masked_fill_(zeroed, 0)


def export(manifest, masks, spec: dict, out) -> Path:
    source = model_dir(manifest)
    model = load_model(manifest, dtype=spec.get("dtype", "float32"))
    for part in iter_tables(masks):  # a part at a time: SparseGPT's parts carry whole weights
        apply_masks(model, part)
    # load_model switches the KV cache off for pruning; keep the base model's setting
    model.config.use_cache = json.loads((source / "config.json").read_text()).get("use_cache", True)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(manifest).save_pretrained(tmp)
        for name in KEEP_FILES:
            if (source / name).exists():
                shutil.copy2(source / name, tmp / name)
        info = {"spec": spec, "masks": str(masks), "masks_provenance": read_provenance(masks)}
        (tmp / "prune_tts.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return Path(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--masks", required=True, help="results/masks/M/V.parquet")
    parser.add_argument("--spec", required=True, help="JSON (or @file): pipeline.core.slices.export_slice")
    parser.add_argument("--out", required=True, help="results/checkpoints/M/V")
    args = parser.parse_args(argv)
    config.or_exit(config.check_stage, "export", spec_argument(args.spec))  # before loading
    print(export(args.model, args.masks, spec_argument(args.spec), args.out))


if __name__ == "__main__":
    from pipeline.core.environment import lean_process

    lean_process()
    main()
