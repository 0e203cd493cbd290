"""What moved between two runs of the same config: on two machines, with other thread counts or
kernels (docs/DEMO.md, "The documented figures and their tolerance").

`tolerance` is how far a cell may move between machines and still be the same result;
`compare_runs` lists, per model, what two results folders share: the zeros of every mask, the
weights of the exported checkpoints, perplexity, every generated row and every table cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

TABLE_KEYS = ["model", "variant", "benchmark", "budget", "wait_times"]


def tolerance(value: float, metric: str, draws: int) -> float:
    """How far a documented figure may move on another CPU. Accuracy and pass@k: the difference
    of two independent draws of a cell of accuracy a over `draws` samples has a standard
    deviation of at most sqrt(2 a (1 - a) / draws); four of them, and at least 0.02 (another
    float order can at worst redraw a sample, and the problems are fixed). Perplexity draws
    nothing: 3% of it, for masks computed in another float order."""
    if metric == "perplexity":
        return 0.03 * value
    return max(0.02, 4 * math.sqrt(2 * value * (1 - value) / draws))


def _masks(folder: Path, other: Path) -> dict:
    same, differing = 0, []
    for path in sorted(folder.glob("masks/*/*.parquet")):
        twin = other / path.relative_to(folder)
        if not twin.exists():
            continue
        a, b = pd.read_parquet(path), pd.read_parquet(twin)
        if "zeroed" not in a:  # structured: which blocks go
            equal = a["removed"].tolist() == b["removed"].tolist()
        else:  # unstructured: the packed zeroed positions (SparseGPT's updated values may differ)
            equal = a["zeroed"].tolist() == b["zeroed"].tolist()
        same += equal
        differing += [] if equal else [str(path.relative_to(folder))]
    return {"masks_same": same, "masks_differing": differing}


def _weights(folder: Path, other: Path) -> float | None:
    from safetensors.torch import load_file

    largest = None
    for path in sorted(folder.glob("checkpoints/*/*/*.safetensors")):
        twin = other / path.relative_to(folder)
        if twin.exists():
            a, b = load_file(path), load_file(twin)
            diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
            largest = diff if largest is None else max(largest, diff)
    return largest


def _generations(folder: Path, other: Path) -> tuple[int, int]:
    same = total = 0
    for path in sorted(folder.glob("generations/*/*/*.parquet")):
        twin = other / path.relative_to(folder)
        if twin.exists():
            a, b = pd.read_parquet(path, columns=["thinking", "answer"]), pd.read_parquet(twin, columns=["thinking", "answer"])
            if len(a) == len(b):
                same += int(((a["thinking"].values == b["thinking"].values) & (a["answer"].values == b["answer"].values)).sum())
            total += len(a)
    return same, total


def compare_runs(folder: str | Path, other: str | Path) -> dict:
    """Two results folders (each with tables/main.csv) of the same config, compared."""
    folder, other = Path(folder), Path(other)
    a = pd.read_csv(folder / "tables" / "main.csv")
    b = pd.read_csv(other / "tables" / "main.csv")
    cells = a.merge(b, on=TABLE_KEYS, suffixes=("", "_other"))
    out = {"cells": len(cells)}
    for metric in ("accuracy", "pass@4", "perplexity"):
        if metric in cells and f"{metric}_other" in cells:
            diff = (cells[metric] - cells[f"{metric}_other"]).abs()
            out[f"{metric}_identical"] = int((diff == 0).sum())
            out[f"{metric}_max_diff"] = float(diff.max())
            if metric == "perplexity":
                out["perplexity_max_relative_diff"] = float((diff / cells[metric]).max())
            else:
                # how close the largest move comes to what the documented figures allow
                draws = cells["n_problems"] * cells["n_seeds"] * cells["n_samples"]
                allowed = [tolerance(v, metric, int(n)) for v, n in zip(cells[metric], draws)]
                out[f"{metric}_max_share_of_tolerance"] = float(max(d / t for d, t in zip(diff, allowed)))
    out.update(_masks(folder, other))
    out["checkpoint_max_weight_diff"] = _weights(folder, other)
    out["generated_rows_identical"], out["generated_rows"] = _generations(folder, other)
    return out
