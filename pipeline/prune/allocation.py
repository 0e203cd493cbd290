"""Layer-wise sparsity allocation: OWL, AlphaPruning and LayerIF.

Each allocation turns one number per decoder block (or per attention / MLP group of a block)
into a target sparsity for the matrices of that block or group. All of them aim at a
parameter-weighted mean sparsity equal to the requested one; the exceptions (OWL's clamp of
non-positive values, LayerIF's clipping) are stated where they happen. `weighted_mean` is the
check. docs/LAYERIF.md describes the LayerIF mapping and how it differs from the LayerIF code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

GROUPS = ("attention", "mlp")


def weighted_mean(values, params) -> float:
    """Parameter-weighted mean of per-unit sparsities (blocks, groups or matrices)."""
    values = np.asarray(values, dtype=np.float64)
    params = np.broadcast_to(np.asarray(params, dtype=np.float64), values.shape)
    return float((values * params).sum() / params.sum())


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant input has no ranking, so it maps to all zeros."""
    span = x.max() - x.min()
    return np.zeros_like(x) if span == 0 else (x - x.min()) / span


# --------------------------------------------------------------------------- OWL


def outlier_ratio(scores: torch.Tensor, M: float) -> float:
    """OWL's layerwise outlier distribution: percentage of scores above M times their mean.

    `scores` are the Wanda scores |W| * sqrt(r) of all linears of one block, concatenated.
    """
    flat = scores.detach().reshape(-1).float()
    threshold = M * torch.mean(flat, dtype=torch.float64)
    return 100.0 * float((flat > threshold).sum()) / flat.numel()


def owl_block_sparsity(ratios: np.ndarray, sparsity: float, lam: float, clamp_min: float | None) -> np.ndarray:
    """Per-block sparsity from OWL outlier ratios D (one per block).

    r = (D - min D) / (max D - min D) * 2 lam; r = r - mean(r) + (1 - s); s_l = 1 - r_l.
    Blocks of a decoder have equal sizes, so the plain mean of s_l is the weighted mean: s.
    With clamp_min (OWL uses 0.01 for Wanda and SparseGPT) every s_l <= 0 becomes clamp_min,
    which raises the mean above s; that only happens when lam > s.
    """
    density = _minmax(np.asarray(ratios, dtype=np.float64)) * 2 * lam
    density = density - density.mean() + (1 - sparsity)
    out = 1 - density
    if clamp_min is not None:
        out = np.where(out <= 0, clamp_min, out)
    return out


# --------------------------------------------------------------------------- AlphaPruning


def esd_alpha(weight: torch.Tensor, bins: int = 100) -> float:
    """AlphaPruning's heavy-tail exponent of a weight matrix ("alpha_peak" in its reference).

    Eigenvalues of W^T W (squared singular values, fp32). The candidate xmin values are the
    eigenvalues near the peak of a `bins`-bin histogram of log10(eigenvalues); for each, the
    power-law MLE alpha = 1 + n / sum(log(lambda_i / xmin)) over the n eigenvalues >= xmin and
    the Kolmogorov-Smirnov distance of that fit; the alpha with the smallest distance wins.
    """
    eigs = torch.linalg.svdvals(weight.detach().float()).square().sort().values.cpu()
    eigs = eigs[eigs > 0]  # exact zeros (rank-deficient matrices) have no logarithm
    log10 = torch.log10(eigs)
    counts = torch.histc(log10, bins, min=log10.min().item(), max=log10.max().item())
    edges = torch.linspace(log10.min().item(), log10.max().item(), bins + 1)
    peak = 10 ** edges[torch.argmax(counts)]
    # The reference compares eigenvalues with log10(0.95 * peak) (a log against a linear
    # value), so its lower bound is far looser than 0.95 * peak; kept so that alphas match
    # the published ones.
    low, high = torch.log10(0.95 * peak).item(), (1.5 * peak).item()

    e = eigs.double()
    log_e = torch.log(e)
    n_all = e.numel()
    candidates = torch.nonzero((eigs[:-1] >= low) & (eigs[:-1] <= high)).flatten()
    n = (n_all - candidates).double()
    tail_log_sum = torch.flip(torch.cumsum(torch.flip(log_e, [0]), 0), [0])  # sum of log_e[i:]
    alphas = 1 + n / (tail_log_sum[candidates] - n * log_e[candidates])
    # KS distance of each candidate's fit over its tail, in chunks to bound memory
    distances = torch.ones_like(alphas)  # the reference keeps distance 1 where alpha <= 1
    positions = torch.arange(n_all, dtype=torch.float64)
    for chunk in torch.arange(candidates.numel()).split(256):
        i, a, m = candidates[chunk], alphas[chunk, None], n[chunk, None]
        rank = positions[None, :] - i[:, None].double()  # position inside the tail
        fitted = 1 - torch.exp((log_e[None, :] - log_e[i][:, None]) * (1 - a))
        gap = torch.where(rank >= 0, torch.abs(fitted - rank / m), 0.0)
        distances[chunk] = torch.where(a[:, 0] > 1, gap.max(1).values, 1.0)
    if candidates.numel() == 0:
        return 0.0  # as the reference, which then reports its initial alpha of 0
    best = int(np.argmin(distances.numpy()))  # first of equal minima, as torch.argmin in the reference
    return float(alphas[best])


def alphapruning_block_sparsity(block_alphas: np.ndarray, block_params: np.ndarray, sparsity: float, eps: float) -> np.ndarray:
    """Per-block sparsity from block alphas (mean alpha of each block's matrices).

    ratio = (a - min a) / (max a - min a) * 2 eps + (1 - eps), then one scaler makes the
    parameter-weighted mean equal to `sparsity`. Higher alpha (a less well trained block)
    is pruned more. No clipping, as in the reference: a large eps at high sparsity can exceed 1.
    """
    ratio = _minmax(np.asarray(block_alphas, dtype=np.float64)) * 2 * eps + (1 - eps)
    params = np.asarray(block_params, dtype=np.float64)
    return ratio * (sparsity * params.sum() / (ratio * params).sum())


def alphapruning_blocks(alphas, sparsity: float, eps: float):
    """AlphaPruning's allocation from the per-matrix alphas table of the stats stage (block, name,
    params, alpha): one row per block with its mean alpha, parameters and target sparsity. Needs
    no weights, so it is known (and checked) as soon as the alphas exist."""
    blocks = alphas.groupby("block", sort=True).agg(alpha=("alpha", "mean"), params=("params", "sum")).reset_index()
    blocks["sparsity"] = alphapruning_block_sparsity(blocks.alpha.to_numpy(), blocks.params.to_numpy(), sparsity, eps)
    return blocks


# --------------------------------------------------------------------------- range


def _largest_below_one(function, high: float) -> float:
    """The largest x in [0, high] with function(x) < 1, for a function increasing in x (bisection)."""
    low = 0.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if function(middle) < 1 else (low, middle)
    return low


def range_problem(per_block, variant: str, prune: dict, recompute=None) -> str | None:
    """Why an allocation's per-block sparsities (one per block, or per block and group) leave
    [0, 1), with the keys of variant `variant` to change; None when every one is inside.
    `recompute(setting, value)`: the allocation's largest sparsity with one setting (sparsity, or
    the allocation's own: eps, lambda) changed, to say how far it may go."""
    values = np.asarray(per_block, dtype=np.float64).reshape(len(per_block), -1)
    bad = np.argwhere((values < 0) | (values >= 1) | ~np.isfinite(values))
    if not len(bad):
        return None
    block = int(bad[0][0])
    value = values[tuple(bad[0])]
    allocation = prune.get("allocation", "uniform")
    key = f"variants.{variant}"
    target = f"{key}.sparsity" if prune.get("sparsity") is not None else f"{key}.nm"
    own = {"alphapruning": ("eps", f"{key}.alphapruning.eps"), "owl": ("lambda", f"{key}.owl.lambda"),
           "layerif": ("e2", f"{key}.layerif.e2")}.get(allocation)
    where = f"{len(bad)} of {values.size} blocks" if values.shape[1] == 1 else f"{len(bad)} of {values.size} block groups"
    line = (f"{key}: the {allocation} allocation at mean sparsity {prune.get('sparsity', prune.get('nm'))} gives block "
            f"{block} sparsity {value:.3f} ({where} outside [0, 1), the range {values.min():.3f} to {values.max():.3f}); "
            "a matrix cannot lose all of its weights.")
    fixes = []
    if not value < 1 and recompute is not None and own:  # how far each setting may go, all else kept
        setting = (prune.get(allocation) or {}).get(own[0])
        if setting:
            fixes.append(f"lower {own[1]} below {_largest_below_one(lambda x: recompute(own[0], x), setting):.3f}")
        if prune.get("sparsity") is not None:
            highest = _largest_below_one(lambda x: recompute("sparsity", x), prune["sparsity"])
            fixes.append(f"lower {target} below {highest:.3f}")
    elif own:
        fixes.append(f"lower {own[1]}" + (f" or {target}" if not value < 1 else f", or raise {target}"))
    return f"{line} Fix: {' or '.join(fixes) or 'lower ' + target}, or use allocation: uniform"


def mean_sparsity(prune: dict) -> float:
    """A variant's mean target sparsity: `sparsity`, or N/M for an N:M pattern."""
    if prune.get("sparsity") is not None:
        return float(prune["sparsity"])
    n, m = (int(part) for part in str(prune["nm"]).split(":"))
    return n / m


def alphapruning_problem(alphas, variant: str, prune: dict) -> str | None:
    """range_problem of a variant's AlphaPruning allocation, from the alphas table alone."""
    sparsity, eps = mean_sparsity(prune), prune["alphapruning"]["eps"]

    def largest(setting: str, value: float) -> float:
        new = (value, eps) if setting == "sparsity" else (sparsity, value)
        return float(alphapruning_blocks(alphas, *new).sparsity.max())

    return range_problem(alphapruning_blocks(alphas, sparsity, eps).sparsity, variant, prune, largest)


def layerif_problem(influence: np.ndarray, variant: str, prune: dict) -> str | None:
    """range_problem of a variant's LayerIF allocation (direction paper_a) from its scores alone,
    for a decoder whose blocks have equal sizes (then each group column's parameters cancel);
    None for direction original, which caps at 0.99. The masks stage checks the exact one."""
    opts = prune.get("layerif") or {}
    if opts.get("direction", "paper_a") != "paper_a":
        return None
    sparsity, e1, e2 = mean_sparsity(prune), opts.get("e1", 0.05), opts.get("e2", 0.40)
    equal = np.ones_like(np.asarray(influence, dtype=np.float64))

    def largest(setting: str, value: float) -> float:
        s, top = (value, e2) if setting == "sparsity" else (sparsity, value)
        return float(layerif_group_sparsity(influence, equal, s, e1, top).max())

    return range_problem(layerif_group_sparsity(influence, equal, sparsity, e1, e2), variant, prune, largest)


# --------------------------------------------------------------------------- LayerIF


def savgol(x: np.ndarray, window: int = 5, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing, equal to scipy.signal.savgol_filter(x, window, order)
    (mode 'interp'): each point gets the value at its position of the least-squares polynomial
    of degree `order` fitted to a window of `window` points, centred where possible and
    shifted inward at the edges."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if window > n:
        raise ValueError(f"Savitzky-Golay window {window} is longer than the {n} values")
    positions = np.arange(window, dtype=np.float64)
    vander = np.vander(positions, order + 1)
    out = np.empty(n)
    for i in range(n):
        start = min(max(i - window // 2, 0), n - window)
        coef, *_ = np.linalg.lstsq(vander, x[start:start + window], rcond=None)
        out[i] = np.polyval(coef, i - start)
    return out


def _normalised_smoothed(score: np.ndarray, window: int = 5, order: int = 2) -> np.ndarray:
    """|S| to [0, 1], Savitzky-Golay smoothed, clipped to [0, 1]. With fewer than `window`
    blocks there is nothing to smooth over (a window of 3 with order 2 is the identity)."""
    norm = _minmax(np.abs(score))
    if norm.size >= window:
        norm = savgol(norm, window, order)
    return np.clip(norm, 0.0, 1.0)


def layerif_group_sparsity(
    scores: np.ndarray,
    group_params: np.ndarray,
    sparsity: float,
    e1: float = 0.05,
    e2: float = 0.40,
    direction: str = "paper_a",
    eps: float = 0.3,
) -> np.ndarray:
    """Sparsity of each (block, group) from LayerIF scores, shape (blocks, 2): attention, mlp.

    direction "paper_a" (the study's mapping), for each group column separately:
      S_norm = clip(savgol(minmax(|S|)), 0, 1); p_hat = (1 - S_norm)(e2 - e1) + e1;
      eta = s * sum N / sum(p_hat N); p = clip(eta * p_hat, 0, 1).
      Higher influence -> lower sparsity. Each column has weighted mean s unless clipped at 1.
    direction "original" (the LayerIF code: AlphaPruning's mapping fed with the scores):
      all (block, group) entries together: ratio = minmax(S) * 2 eps + (1 - eps), one scaler
      so the weighted mean is s, then values above 0.99 are set to 0.99. Higher influence ->
      higher sparsity; no smoothing or abs. e1, e2 are unused and eps is used only here.
    """
    scores = np.asarray(scores, dtype=np.float64)
    params = np.asarray(group_params, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != 2 or params.shape != scores.shape:
        raise ValueError(f"scores and group_params must both have shape (blocks, 2); got {scores.shape} and {params.shape}")
    if direction == "paper_a":
        out = np.empty_like(scores)
        for g in range(2):
            p_hat = (1 - _normalised_smoothed(scores[:, g])) * (e2 - e1) + e1
            eta = sparsity * params[:, g].sum() / (p_hat * params[:, g]).sum()
            out[:, g] = np.clip(eta * p_hat, 0.0, 1.0)
        return out
    if direction == "original":
        ratio = _minmax(scores) * 2 * eps + (1 - eps)
        ratio = ratio * (sparsity * params.sum() / (ratio * params).sum())
        return np.minimum(ratio, 0.99)
    raise ValueError(f"unknown LayerIF direction {direction!r}; choose paper_a or original")


# --------------------------------------------------------------------------- score files


def read_layerif_scores(path) -> np.ndarray:
    """Read per-sublayer LayerIF scores into an array of shape (blocks, 2): attention, mlp.

    Accepted: a CSV (.csv) or Parquet (.parquet, .pq) table in long form with columns
    `block` (integer, 0-based), `group` (`attention` or `mlp`) and `score` (finite number),
    one row per block and group, blocks 0..B-1 all present. Other columns are ignored.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LayerIF scores file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"LayerIF scores file {path}: unknown extension {suffix!r}; use .csv or .parquet")
    where = f"LayerIF scores file {path}"
    missing = [c for c in ("block", "group", "score") if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}; need block, group, score (found {', '.join(map(str, table.columns))})")
    groups = table["group"].astype(str).str.strip().str.lower()
    bad = sorted(set(groups) - set(GROUPS))
    if bad:
        raise ValueError(f"{where}: unknown group(s) {', '.join(map(repr, bad))}; group must be attention or mlp")
    blocks = pd.to_numeric(table["block"], errors="coerce")
    if blocks.isna().any() or (blocks % 1 != 0).any() or (blocks < 0).any():
        raise ValueError(f"{where}: column block must hold non-negative integers")
    values = pd.to_numeric(table["score"], errors="coerce")
    if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
        raise ValueError(f"{where}: column score must hold finite numbers (found empty, text, NaN or inf)")
    keys = list(zip(blocks.astype(int), groups))
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"{where}: duplicate rows for (block, group) {dupes[:5]}")
    n_blocks = int(blocks.max()) + 1 if len(blocks) else 0
    absent = [(b, g) for b in range(n_blocks) for g in GROUPS if (b, g) not in set(keys)]
    if n_blocks == 0 or absent:
        raise ValueError(f"{where}: needs one row per block 0..{max(n_blocks - 1, 0)} and group; missing {absent[:5] or 'all rows'}")
    out = np.empty((n_blocks, 2))
    for (b, g), v in zip(keys, values):
        out[b, GROUPS.index(g)] = v
    return out


def write_layerif_scores(scores: np.ndarray, path) -> Path:
    """Write scores of shape (blocks, 2) in the long form `read_layerif_scores` accepts;
    the extension (.csv, .parquet) picks the format."""
    import pandas as pd

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != 2:
        raise ValueError(f"scores must have shape (blocks, 2); got {scores.shape}")
    path = Path(path)
    table = pd.DataFrame(
        {"block": np.repeat(np.arange(len(scores)), 2), "group": list(GROUPS) * len(scores), "score": scores.reshape(-1)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False, float_format="%.17g")
    elif path.suffix.lower() in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; use .csv or .parquet")
    return path
