"""Artifacts: provenance in every Parquet file, atomic writes."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from pipeline.core import artifacts
from pipeline.core.specs import spec_hash


def test_provenance_travels_with_the_file(tmp_path):
    path = tmp_path / "t.parquet"
    spec = {"variant": "wanda-20", "prune": {"method": "wanda", "sparsity": 0.2}}
    artifacts.write_table(pd.DataFrame({"a": [1, 2]}), path, spec, seed=7)
    info = artifacts.read_provenance(path)
    assert info["config"] == spec and info["config_hash"] == spec_hash(spec) and info["seed"] == 7
    assert info["packages"]["torch"] and info["packages"]["transformers"]
    assert "math-verify" in info["packages"] and "vllm" in info["packages"]
    assert info["git_commit"] is None or len(info["git_commit"]) >= 40
    assert artifacts.read_table(path)["a"].tolist() == [1, 2]
    shown = subprocess.run([sys.executable, "-m", "pipeline.core.provenance", str(path)], capture_output=True, text=True)
    assert shown.returncode == 0 and spec_hash(spec) in shown.stdout


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "t.parquet"
    artifacts.write_table(pd.DataFrame({"a": [1]}), path, {"v": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert artifacts.read_table(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "ckpt"
    with artifacts.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert (target / "config.json").exists()
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(target) as tmp:
            (tmp / "half.safetensors").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_file_without_provenance_is_reported(tmp_path):
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="no prune-tts provenance"):
        artifacts.read_provenance(path)


def test_parts_become_row_groups_of_one_file(tmp_path):
    path = tmp_path / "masks.parquet"
    parts = [pd.DataFrame({"block": [b], "name": ["q"], "values": [bytes([b]) * (b + 1)]}) for b in range(3)]

    def written(frames):  # nothing is on disk before the last part is written
        for frame in frames:
            assert not path.exists()
            yield frame

    artifacts.write_tables(written(parts), path, {"variant": "v"})
    assert artifacts.read_provenance(path)["config"] == {"variant": "v"}
    back = list(artifacts.iter_tables(path))
    assert [f.to_dict("records") for f in back] == [f.to_dict("records") for f in parts]
    assert artifacts.read_table(path)["values"].tolist() == [b"\x00", b"\x01\x01", b"\x02\x02\x02"]


def test_interrupted_stream_leaves_the_old_file(tmp_path):
    path = tmp_path / "masks.parquet"
    artifacts.write_table(pd.DataFrame({"a": [1]}), path, {"v": 1})

    def dies():
        yield pd.DataFrame({"a": [2]})
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.write_tables(dies(), path, {"v": 2})
    assert artifacts.read_table(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["masks.parquet"]
    with pytest.raises(ValueError, match="nothing to write"):
        artifacts.write_tables(iter([]), tmp_path / "empty.parquet")


def test_artifacts_get_the_permissions_of_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        artifacts.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet", {"v": 1})
        with artifacts.atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "t.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o755
