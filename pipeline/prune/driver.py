"""The block-by-block driver shared by every data-driven method.

Capture what enters decoder block 0 for all calibration sequences (hidden states and the
keyword arguments the model passes its blocks: attention mask, position ids, rotary
`position_embeddings`), then for each block: run it dense with hooks on its nn.Linear modules
that accumulate fp32 input statistics, let the method prune it, and re-run the pruned block to
produce the next block's inputs. Statistics of block i thus come from the dense block i fed by
the already pruned blocks 0..i-1. Only the current block sits on the accelerator (and, for a
model from pipeline.models.lazy_model, in memory at all).

When only statistics are wanted from the dense pass (the outputs come from the pruned re-run),
the dense pass stops once the last linear of the block has seen its input: that linear's own
product (the MLP down projection, about a fifth of a block's work) is never computed.

Linears fed the very same tensor (q/k/v, gate/up, and every expert's gate/up in an MoE block)
share one accumulator: the statistics are identical, and for SparseGPT so are the Hessian and
its inverse. Experts are matrices like any other (pipeline.prune.experts); while statistics are
collected they compute every token, as llmcompressor's calibration does.

Blocks of different attention types (sliding window or full: Gemma2/3, gpt-oss) get different
keyword arguments (causal mask, rotary embeddings); they are captured once per type.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from pipeline.models import lazy_model
from pipeline.models.models import decoder_layers
from pipeline.prune import experts

# tokens per forward batch: enough rows for efficient matrix products (as fast as 2048 on CPU),
# few enough that a block's transient activations stay small next to the model
DEFAULT_BATCH_TOKENS = 1024


# linears that route tokens to experts: never pruned (left dense, as the reference does)
ROUTERS = ("gate", "router", "shared_expert_gate")


def linears(block: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The prunable nn.Linear modules of a decoder block, in module order (q, k, v, o, gate, up,
    down); router linears excluded."""
    return [(name, m) for name, m in block.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] not in ROUTERS]


def matrices(block: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every prunable matrix of a block as (name, 2-D weight), in module order: the linears'
    weights and each expert's gate, up and down (views into the experts' 3-D parameters)."""
    out = []
    for name, m in block.named_modules():
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] not in ROUTERS:
            out.append((name, m.weight))
        elif experts.is_fused_experts(m):
            out += experts.matrices(name, m)
    return out


def matrix(block: nn.Module, name: str) -> torch.Tensor:
    """The 2-D weight called `name` by `matrices` (a linear's weight or an expert's view)."""
    owner, _, last = name.rpartition(".")
    if last in experts.PARTS:
        head, _, index = owner.rpartition(".")
        if index.isdigit() and head:
            module = block.get_submodule(head)
            if experts.is_fused_experts(module):
                return experts.expert_weights(module, int(index))[last]
    return block.get_submodule(name).weight


def kind(name: str) -> str:
    """The matrix kind a name belongs to, for reports: attention, experts or mlp (dense)."""
    if ".experts." in f".{name}":
        return "experts"
    return "attention" if "attn" in name or "attention" in name else "mlp"


def batches(samples: Sequence[Sequence[int]], batch_tokens: int) -> list[list[int]]:
    """Indices of samples grouped by length (no padding), at most `batch_tokens` tokens each."""
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(samples):
        by_length.setdefault(len(ids), []).append(i)
    out = []
    for length, idx in by_length.items():
        size = max(1, batch_tokens // max(length, 1))
        out += [idx[j : j + size] for j in range(0, len(idx), size)]
    return out


class _Stop(Exception):
    pass


def block_types(model) -> list:
    """Each block's attention type (None for all when the model has one kind)."""
    types = list(getattr(model.config, "layer_types", None) or [])
    n = len(decoder_layers(model))
    return types[:n] if len(set(types)) > 1 else [None] * n


class _Capture(nn.Module):
    """Stands in for a block while the inputs are captured: records what the model passes it
    and hands its input on unchanged; the last one stops the forward."""

    def __init__(self, sink: dict, key, last: bool):
        super().__init__()
        self.sink, self.key, self.last = sink, key, last

    def forward(self, *args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if self.key is not False and self.key not in self.sink:
            self.sink[self.key] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            self.sink.setdefault("hidden", hidden)
        if self.last:
            raise _Stop
        return hidden


def capture_inputs(model, samples, device, batch_tokens=DEFAULT_BATCH_TOKENS) -> list[tuple[torch.Tensor, dict]]:
    """[(hidden states entering block 0, {attention type: the blocks' keyword arguments})] per
    batch, on `device`. Only the embeddings and rotary module visit the device: blocks up to the
    first of the last type are replaced by stand-ins that record their arguments."""
    layers = decoder_layers(model)
    types = block_types(model)
    first = {}
    for i, t in enumerate(types):
        first.setdefault(t, i)
    stop = max(first.values())
    inner = model.model
    moved = [m for m in (inner.embed_tokens, getattr(inner, "rotary_emb", None)) if m is not None]
    lazy_model.load(inner.embed_tokens)
    for m in moved:
        m.to(device)
    captured = []
    sink: dict = {}
    originals = [layers[i] for i in range(stop + 1)]
    for i in range(stop + 1):
        layers[i] = _Capture(sink, types[i] if first[types[i]] == i else False, i == stop)
    try:
        with torch.no_grad():
            for idx in batches(samples, batch_tokens):
                ids = torch.tensor([list(samples[i]) for i in idx], dtype=torch.long, device=device)
                sink.clear()
                try:
                    model(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
                hidden = sink.pop("hidden")
                captured.append((hidden, dict(sink)))
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer
        for m in moved:
            if not lazy_model.release(m):
                m.to("cpu")
    return captured


def _output(out):
    return out[0] if isinstance(out, tuple) else out


# Hessians are kept as column slabs of this width on and above the diagonal while they
# accumulate (see _add_gram)
GRAM_CHUNK = 256


def _slabs(n: int, chunk: int = GRAM_CHUNK):
    return [(j, min(j + chunk, n)) for j in range(0, n, chunk)]


def _add_gram(H: torch.Tensor, x: torch.Tensor) -> None:
    """H += x^T x, on and above the diagonal slabs only. The product is symmetric: computing
    the column slabs H[:k, j:k] alone takes about half the multiply-adds of x.T @ x for wide x;
    `_mirror` copies them below once the sum is complete. Each entry is the same dot product
    as in x.T @ x, added after rounding (not addmm_, whose fused add rounds differently), and
    the temporary is one slab, not a second H."""
    for j, k in _slabs(x.shape[1]):
        H[:k, j:k] += x[:, :k].T @ x[:, j:k]


def _scale_upper(H: torch.Tensor, factor: float) -> None:
    """H *= factor on the part `_add_gram` keeps."""
    for j, k in _slabs(H.shape[1]):
        H[:k, j:k] *= factor


def _mirror(H: torch.Tensor) -> None:
    """Complete a sum of `_add_gram`s: each entry below the slabs equals its mirror image,
    which received the very same additions."""
    for j, k in _slabs(H.shape[1]):
        H[k:, j:k] = H[j:k, k:].T


class _Accumulator:
    """fp32 input statistics of a block's matrices, each the running mean llmcompressor keeps:
    'wanda' (r = sum of x_j^2 over tokens / sequences) or 'hessian' (2 / sequences * sum x x^T).
    After every batch of `batch` sequences the statistic is rescaled by old / new sequence count
    and the batch's share added, in the reference's order of operations, so that borderline
    weights (and every block after them) are pruned identically.

    `order` records the matrices in the order the block uses them; once `stop_after` names
    one, the forward is cut short (raises _Stop) right after that matrix's input is recorded.
    `see(name, x)` is how a matrix shows its input: the linears' hooks, the experts' forward."""

    def __init__(self, block: nn.Module, kind: str):
        self.kind, self.sums, self.leader, self.nsamples = kind, {}, {}, 0  # sequences so far, this batch's included
        self.batch = 0  # sequences in the current batch
        self.order: list[str] = []
        self.stop_after: str | None = None
        self._last = (None, None)
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in linears(block)]

    def _hook(self, name):
        return lambda _module, args: self.see(name, args[0])

    def see(self, name, x):
        if name not in self.order:
            self.order.append(name)
        self._record(name, x)
        if name == self.stop_after:
            raise _Stop

    def _record(self, name, x):
        if self._last[0] is x:  # same input as the previous matrix: share its statistics
            self.leader.setdefault(name, self._last[1])
            return
        lead = self.leader.setdefault(name, name)
        self._last = (x, lead)
        cols = x.shape[-1]
        if lead not in self.sums:
            self.sums[lead] = x.new_zeros((cols,) if self.kind == "wanda" else (cols, cols), dtype=torch.float32)
        flat = x.reshape(-1, cols).float()
        S, seen = self.sums[lead], self.nsamples
        factor = (seen - self.batch) / seen
        if self.kind == "wanda":
            # as llmcompressor: r *= n / (n + b); r += ||x_j||^2 / (n + b), the norm over the
            # transposed input (a norm, then squared: not the same rounding as a sum of squares)
            S *= factor
            S += torch.norm(flat.t(), p=2, dim=1) ** 2 / seen
            return
        # H *= n / (n + b); H += (sqrt(2 / (n + b)) x)^T (sqrt(2 / (n + b)) x)
        _scale_upper(S, factor)
        _add_gram(S, math.sqrt(2 / seen) * flat)

    def finish(self) -> dict[str, torch.Tensor]:
        for h in self.handles:
            h.remove()
        self._last = (None, None)
        if self.kind == "hessian":
            for t in self.sums.values():
                _mirror(t)
        out = {name: self.sums[lead] for name, lead in self.leader.items()}
        self.sums = {}  # the caller owns the statistics now and may free them one by one
        return out


def walk(
    model,
    samples: Sequence[Sequence[int]],
    device: str = "cpu",
    collect: str | None = None,
    observe: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    propagate: str = "pruned",
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    label: str = "block",
) -> Iterator[tuple[int, nn.Module, dict[str, torch.Tensor]]]:
    """Walk the decoder blocks with the calibration `samples` (lists of token ids), yielding
    (i, block, statistics) once block i's dense pass is done; the caller may prune the block in
    place before asking for the next one.

    collect: None, 'wanda' or 'hessian': fp32 statistics as {linear name: tensor}. propagate
    'pruned': re-run the block after the caller is done with it, so block i+1 sees pruned
    outputs; 'dense': pass on the dense outputs (one forward per block; for statistics of the
    dense model). `observe(i, inputs, outputs)` sees each batch's inputs and dense outputs of
    block i.
    """
    if propagate not in ("pruned", "dense"):
        raise ValueError(f"propagate must be 'pruned' or 'dense', not {propagate!r}")
    # the dense outputs are only needed to propagate them or to show them to `observe`
    truncate = collect is not None and propagate == "pruned" and observe is None
    with torch.no_grad():
        layers = decoder_layers(model)
        types = block_types(model)
        data = capture_inputs(model, samples, device, batch_tokens)
        start = time.perf_counter()
        for i, block in enumerate(layers):
            lazy_model.load(block)
            block.to(device)
            acc = _Accumulator(block, collect) if collect else None
            # experts compute every token while statistics are collected (the reference's
            # calibration), only their routed tokens otherwise
            with experts.calibrating(block, acc.see if acc else None, all_tokens=acc is not None):
                for j, (hidden, per_type) in enumerate(data):
                    if acc:
                        acc.batch = hidden.shape[0]
                        acc.nsamples += acc.batch
                    try:
                        out = _output(block(hidden, **per_type[types[i]]))
                    except _Stop:
                        out = None
                    if acc and truncate:  # the first batch showed which matrix the block uses last
                        acc.stop_after = acc.order[-1]
                    if observe:
                        observe(i, hidden, out)
                    if propagate == "dense":  # this batch's input is spent: its output takes its place
                        data[j] = (out, per_type)
                    del hidden, out
            stats = acc.finish() if acc else {}
            del acc
            yield i, block, stats
            del stats
            if propagate == "pruned" and i + 1 < len(layers):  # nothing reads the last block's outputs
                with experts.calibrating(block, None, all_tokens=collect is not None):
                    for j, (hidden, per_type) in enumerate(data):
                        data[j] = (_output(block(hidden, **per_type[types[i]])), per_type)
            if not lazy_model.release(block) and device != "cpu":
                block.to("cpu")
            print(f"{label} {i + 1}/{len(layers)} ({time.perf_counter() - start:.1f}s)", file=sys.stderr, flush=True)


def run(model, samples, device: str = "cpu", on_block: Callable[[int, nn.Module, dict], None] | None = None,
        **options) -> None:
    """`walk`, calling `on_block(i, block, statistics)` at each block (which may prune it)."""
    for i, block, stats in walk(model, samples, device, **options):
        if on_block:
            on_block(i, block, stats)
