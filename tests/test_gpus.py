"""GPU devices and leases (pipeline.core.gpus): every GPU job holds devices of its own, given back
when it ends, fails or is killed; the preflight refuses what the machine cannot give; the cost
tool's wall clock on N GPUs; the lease timeline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import cost
from pipeline import preflight
from pipeline.core import config as cfg
from pipeline.core import gpus
from pipeline.reporting import gpu_timeline
from tests.workflow_util import ROOT


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """This machine as one with n fake GPUs, leases in a folder of the test's own."""
    def with_gpus(n: int) -> dict:
        monkeypatch.setenv(gpus.FAKE_ENV, str(n))
        monkeypatch.setenv(gpus.LEASE_DIR_ENV, str(tmp_path / "leases"))
        return {**os.environ}
    return with_gpus


def lease_job(devices: int, command: list[str], rule: str = "generate", log: Path | None = None,
              extra_env: dict | None = None, **popen) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.core.gpus", "run", "--devices", str(devices), "--rule", rule]
    if log:
        args += ["--log", str(log)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    return subprocess.Popen(args + ["--", *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def overlapping_on_one_device(leases: list[dict]) -> list[tuple[dict, dict]]:
    clashes = []
    for i, a in enumerate(leases):
        for b in leases[i + 1:]:
            if set(a["devices"]) & set(b["devices"]) and a["start"] < b["end"] and b["start"] < a["end"]:
                clashes.append((a, b))
    return clashes


# --------------------------------------------------------------------------- the machine's devices


def test_devices_come_from_fake_count_then_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5,7")
    assert gpus.visible_devices() == ("2", "5", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1b2c,GPU-9f")  # UUIDs stay as given
    assert gpus.visible_devices() == ("GPU-1b2c", "GPU-9f")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,-1,4")  # CUDA stops at the first invalid entry
    assert gpus.visible_devices() == ("3",)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_devices() == ()
    monkeypatch.setenv(gpus.FAKE_ENV, "3")  # the rehearsal wins
    assert gpus.visible_devices() == ("0", "1", "2")
    monkeypatch.setenv(gpus.FAKE_ENV, "four")
    with pytest.raises(gpus.DeviceError, match="PRUNE_TTS_FAKE_GPUS='four' is not a number"):
        gpus.visible_devices()


def test_each_job_asks_for_the_devices_its_stage_holds(monkeypatch):
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    config = cfg.load(ROOT / "config" / "config.yaml")
    config["generation"]["vllm"]["tensor_parallel_size"] = 4
    assert gpus.job_devices(config, "masks", "qwen3-8B") == 1
    assert gpus.job_devices(config, "stats_activations", "qwen3-8B") == 1
    assert gpus.job_devices(config, "generate", "qwen3-8B") == 4
    assert gpus.job_devices(config, "perplexity", "qwen3-8B") == 4
    assert gpus.job_devices(config, "grade", "qwen3-8B") == 0
    # a GPU job is scheduled with one CPU thread: --cores 8 never holds eight GPUs idle
    assert gpus.job_threads(config, "generate", "qwen3-8B") == gpus.job_threads(config, "masks", "qwen3-8B") == 1
    config["pruning"]["device"] = "cpu"
    assert gpus.job_devices(config, "masks", "qwen3-8B") == 0
    assert gpus.job_threads(config, "masks", "qwen3-8B") == 2  # a real model pruned on the CPU
    demo = cfg.load(ROOT / "config" / "demo.yaml")
    model = next(iter(demo["models"]))
    assert gpus.job_devices(demo, "generate", model) == 0  # the demo runs on the CPU
    # on one thread each, so that two of its jobs run side by side on two cores
    assert gpus.job_threads(demo, "generate", model) == gpus.job_threads(demo, "masks", model) == 1
    monkeypatch.setenv(gpus.FAKE_ENV, "2")
    assert gpus.job_devices(demo, "generate", model) == 1 and gpus.job_devices(demo, "masks", model) == 1


# --------------------------------------------------------------------------- leases


def test_jobs_never_share_a_device_and_wait_for_a_free_one(fake, tmp_path):
    fake(3)
    log = tmp_path / "gpus.jsonl"
    script = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(0.6)"
    jobs = [lease_job(2, [sys.executable, "-c", script], log=log) for _ in range(3)] \
        + [lease_job(1, [sys.executable, "-c", script], rule="masks", log=log) for _ in range(2)]
    outputs = [job.communicate(timeout=60) for job in jobs]
    assert all(job.returncode == 0 for job in jobs), outputs
    leases = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(leases) == 5 and sorted(len(lease["devices"]) for lease in leases) == [1, 1, 2, 2, 2]
    assert overlapping_on_one_device(leases) == []
    assert all(set(lease["devices"]) <= {0, 1, 2} for lease in leases)
    # each job saw exactly its lease in CUDA_VISIBLE_DEVICES
    seen = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert sorted(",".join(map(str, lease["devices"])) for lease in leases) == seen
    assert all({"rule", "wildcards", "devices", "start", "end"} <= lease.keys() for lease in leases)
    # five jobs of 8 device-slots on 3 devices: someone waited, and the waits were short
    assert max(lease["start"] - lease["requested"] for lease in leases) > 0.3


def test_a_job_killed_with_sigkill_gives_its_devices_back(fake, tmp_path):
    fake(2)
    log = tmp_path / "gpus.jsonl"
    holder = lease_job(2, ["sleep", "60"], log=log, start_new_session=True)
    deadline = time.time() + 30
    while not any(gpus.holders().values()):
        assert time.time() < deadline and holder.poll() is None, holder.communicate()
        time.sleep(0.05)
    os.killpg(holder.pid, signal.SIGKILL)  # the job and the command it runs, as an OOM killer would
    holder.wait()
    start = time.time()
    follower = lease_job(2, ["true"], rule="masks", log=log)
    assert follower.wait(timeout=30) == 0
    assert time.time() - start < 10  # no stale lease: it did not wait out the killed one
    leases = [json.loads(line) for line in log.read_text().splitlines()]
    killed = [lease for lease in leases if lease.get("ended") == "killed"]
    assert len(killed) == 1 and killed[0]["devices"] == [0, 1] and killed[0]["end"] >= killed[0]["start"]
    assert [lease["rule"] for lease in leases if lease.get("ended") != "killed"] == ["masks"]


def test_the_devices_stay_leased_while_the_command_of_a_killed_job_still_runs(fake, tmp_path):
    fake(1)
    marker = tmp_path / "started"
    holder = lease_job(1, ["bash", "-c", f"touch {marker}; sleep 1.5"], log=tmp_path / "gpus.jsonl")
    deadline = time.time() + 30
    while not marker.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    holder.kill()  # the lease process alone: its command goes on, on the device
    holder.wait()
    assert gpus.try_acquire(1, {"rule": "probe"}, None) is None
    time.sleep(2.0)
    lease = gpus.try_acquire(1, {"rule": "probe"}, None)
    assert lease is not None and lease.devices == ["0"]
    lease.release(None)


def test_exit_status_passes_through_and_nothing_is_leased_for_zero_devices(fake, tmp_path):
    fake(1)
    log = tmp_path / "gpus.jsonl"
    failing = lease_job(1, ["bash", "-c", "exit 3"], log=log)
    assert failing.wait(timeout=30) == 3
    assert json.loads(log.read_text())["exit_status"] == 3
    free = lease_job(0, ["bash", "-c", "echo ${CUDA_VISIBLE_DEVICES-unset}; exit 4"], log=log,
                     extra_env={"CUDA_VISIBLE_DEVICES": "keep"})
    out, _ = free.communicate(timeout=30)
    assert free.returncode == 4 and out.strip() == "keep"
    assert len(log.read_text().splitlines()) == 1  # a CPU job leaves no lease line


def test_more_devices_than_the_machine_has_is_refused_at_once(fake, tmp_path):
    fake(2)
    job = lease_job(3, ["true"], log=tmp_path / "gpus.jsonl")
    _, err = job.communicate(timeout=30)
    assert job.returncode == 2
    assert "needs 3 GPU(s) and this machine has 2" in err and "tensor_parallel_size" in err


def test_each_slurm_job_leases_from_its_own_devices(monkeypatch):
    monkeypatch.delenv(gpus.LEASE_DIR_ENV, raising=False)
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    local = gpus.lease_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    first = gpus.lease_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "102")
    # Slurm numbers each job's devices from 0: two jobs on one node must not wait on each other
    assert len({local, first, gpus.lease_dir()}) == 3


# --------------------------------------------------------------------------- refused before any job


def test_preflight_refuses_more_devices_than_the_machine_gives(fake, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    config = cfg.load(ROOT / "tests" / "configs" / "small.yaml")
    config["generation"]["vllm"]["tensor_parallel_size"] = 2
    job = [("generate", {"model": "tiny-qwen3", "variant": "dense", "benchmark": "aime24"})]
    found = preflight.problems(config, job)
    assert len(found) == 1 and found[0].startswith("generation.vllm.tensor_parallel_size: 2") \
        and "demo model runs on the CPU" in found[0] and "PRUNE_TTS_FAKE_GPUS" in found[0]
    fake(4)
    assert preflight.problems(config, job) == []
    assert "4 visible here" in preflight.problems(config, job, gpu_limit=1)[0]
    fake(1)
    found = preflight.problems(config, job)
    assert len(found) == 1 and "needs 2 GPU(s), 1 visible here (PRUNE_TTS_FAKE_GPUS=1)" in found[0]
    assert preflight.problems(config, job, local=False) == []  # Slurm gives the job its devices


# --------------------------------------------------------------------------- planning and the timeline


def test_wall_clock_spreads_gpu_hours_over_the_devices_with_the_critical_path_as_floor():
    result = {"shapes": {"a": {}, "b": {}}, "timed": [
        ("stats_activations", "a", 1.0, 1), ("masks", "a", 2.0, 1), ("masks", "a", 1.0, 1),
        ("generate", "a", 5.0, 2), ("generate", "a", 3.0, 2), ("generate", "b", 4.0, 2), ("masks", "b", 1.0, 1)]}
    one = cost.wall_clock(result, 2)
    assert one["critical_path_h"] == 1.0 + 2.0 + 5.0  # model a's statistics, longest masks, longest generation
    assert one["spread_h"] == pytest.approx((1 + 2 + 1 + 1) / 2 + (5 + 3 + 4) * 2 / 2)
    many = cost.wall_clock(result, 64)
    assert many["wall_h"] == many["critical_path_h"] == 8.0  # more GPUs stop helping
    three = cost.wall_clock(result, 3)  # a job of 2 fits once in 3 devices
    assert three["per_rule"]["generate"] == pytest.approx((5 + 3 + 4) * 2 / 2)
    with pytest.raises(ValueError, match="tensor_parallel_size 2 needs 2 GPUs"):
        cost.wall_clock(result, 1)


def test_cost_prints_wall_clock_beside_gpu_hours(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cost.main(["--configfile", "config/config.yaml", "--gpus", "8"])
    eight = capsys.readouterr().out
    cost.main(["--configfile", "config/config.yaml", "--gpus", "1"])
    one = capsys.readouterr().out
    assert "wall-clock hours on 8 GPUs" in eight and "Wall clock on 8 GPUs" in eight

    def total(text: str, column: int) -> float:
        row = next(line for line in text.splitlines() if line.startswith("| **total**"))
        return float(row.split("|")[column].replace(",", ""))

    assert total(one, 6) == pytest.approx(total(one, 3), rel=0.01)  # one GPU: wall clock = GPU-hours
    assert total(one, 3) / 8 - 0.01 <= total(eight, 6) < total(one, 3) / 4  # figures printed to 0.01 h


def test_timeline_draws_the_latest_runs_leases_with_each_devices_share(tmp_path):
    leases = [
        {"rule": "generate", "devices": [0, 1], "start": 100.0, "end": 110.0, "run": "2"},
        {"rule": "masks", "devices": [2], "start": 100.0, "end": 105.0, "run": "2"},
        {"rule": "generate", "devices": [0], "start": 10.0, "end": 20.0, "run": "1"},
    ]
    log = tmp_path / "gpus.jsonl"
    log.write_text("\n".join(json.dumps(lease) for lease in leases) + "\n{\"cut short")
    latest = gpu_timeline.latest_run(gpu_timeline.read_leases(log))
    assert [lease["rule"] for lease in latest] == ["generate", "masks"]
    assert gpu_timeline.busy_fraction(latest) == {"0": 1.0, "1": 1.0, "2": 0.5}
    gpu_timeline.draw(latest, tmp_path / "timeline", devices=["0", "1", "2", "3"])
    gpu_timeline.draw([], tmp_path / "empty")
    for stem in ("timeline", "empty"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "GPU 3 (0%)" in (tmp_path / "timeline.svg").read_text()  # an idle device shows
