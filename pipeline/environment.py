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
