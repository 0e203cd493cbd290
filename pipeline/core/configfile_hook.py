"""The project's refusal for a `--configfile` that is missing or not valid YAML.

Snakemake reads every `--configfile` while it parses its command line, before the Snakefile
runs: a missing file ends in a raw traceback, and a YAML error names neither line nor column.
install.sh puts a one-line .pth file in the virtual environment that calls `install()` at
start-up. It costs nothing until Snakemake imports its config-file module; then that module's
loader is wrapped so that a path the project's strict loader refuses (pipeline.core.config.load_yaml:
missing file, YAML error with line and column, duplicate key) gets the project's one-block
refusal and exit status 1. Files it reads go on to Snakemake's own loader unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

TARGET = "snakemake.common.configfile"


def _checked(load):
    def load_configfile(configpath, *args, **kwargs):
        if isinstance(configpath, (str, Path)):
            from pipeline.core import config

            config.or_exit(config.load_yaml, configpath)
        return load(configpath, *args, **kwargs)

    load_configfile.__wrapped__ = load
    return load_configfile


class _Finder(importlib.abc.MetaPathFinder):
    """Finds Snakemake's config-file module as usual and wraps its loader once it has run
    (before any other module imports the loader by name)."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.load_configfile = _checked(module.load_configfile)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if TARGET not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
