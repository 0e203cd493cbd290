"""The process environment that stage jobs inherit from Snakemake."""

from __future__ import annotations

import os
import sys


def put_interpreter_first() -> None:
    """Make `python` in rule commands the interpreter running Snakemake, so a virtual
    environment needs no activation; under --sdm conda the rule's environment still wins."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bindir]:
        os.environ["PATH"] = bindir + os.pathsep + path


# Installed for vLLM but never used by the stages that run plain PyTorch (no compiled kernels,
# no scipy code), yet imported by torch and transformers on the way in: ~100 MB resident.
# scikit-learn goes with scipy: transformers imports it when installed (assisted generation),
# and it needs scipy, so an environment with scikit-learn would otherwise fail to load a model.
UNUSED_BY_PYTORCH_STAGES = ("triton", "scipy", "sklearn")


def lean_process(unused=UNUSED_BY_PYTORCH_STAGES) -> None:
    """Set up the process of a stage that runs plain PyTorch over large weights and never
    reaches vLLM: `unused` count as not installed (a None entry in sys.modules fails `import`
    and makes find_spec return None) unless already imported, and Arrow allocates from the C
    heap like PyTorch, so the memory one lets go the other reuses (Arrow's own pool keeps it).
    Blocks of 1 MiB and more are mapped on their own, so a released block goes back to the
    system: glibc's dynamic threshold otherwise keeps ~40 MiB a block and the peak grows with
    depth (benchmarks/masks_memory.py)."""
    for name in unused:
        sys.modules.setdefault(name, None)
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    _map_large_allocations()


def _map_large_allocations(threshold: int = 1 << 20) -> None:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD; a fixed value also stops glibc raising it
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
