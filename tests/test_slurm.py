"""The Slurm profile: what its jobs ask for (dry runs, no cluster), and the smallest complete run
submitted to a local Slurm cluster.

`.ci/slurm.sh up` starts a single-node cluster on localhost (Debian's slurmctld, slurmd, munge)
with four file-backed GPUs; without one the cluster tests are skipped, saying so."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.workflow_util import ROOT, copy_workflow, snakemake, write_config

TENSOR_PARALLEL = 4


def _grid(model: dict, tensor_parallel: int) -> dict:
    return {
        "models": {"big": model},
        "variants": {"dense": {"method": "dense"}, "wanda-20": {"method": "wanda", "sparsity": 0.2}},
        "benchmarks": {"aime24": {"file": "config/demo/aime24.jsonl"}},
        "calibration": {"c4": {"source": "file", "path": "config/demo/calibration.txt", "samples": 4, "length": 64}},
        "generation": {"budgets": [8], "seeds": [7], "answer_max_tokens": 8,
                       "vllm": {"tensor_parallel_size": tensor_parallel, "max_model_len": 1024,
                                "enforce_eager": True, "dtype": "float32"}},
        "perplexity": {"text": "config/demo/heldout.txt", "length": 64},
    }


def dry_run_resources(output: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and found:
            pairs = (item.split("=", 1) for item in found.group(1).split(", "))
            jobs.append((rule.group(1), {k: v for k, v in pairs}))
    return jobs


def test_slurm_profile_asks_for_the_tensor_parallel_gpus(tmp_path):
    """generate and perplexity hold the whole model: tensor_parallel_size GPUs each, which the
    Slurm plugin passes to sbatch as --gpus=N; masks works block by block on one."""
    workdir = copy_workflow(tmp_path)
    model = {"hub": "simplescaling/s1.1-32B", "template": "s1", "size_b": 32}
    write_config(workdir / "tp.yaml", {**_grid(model, TENSOR_PARALLEL), "preflight": False})
    result = snakemake(workdir, "--workflow-profile", "profiles/slurm", "--configfile", "tp.yaml", "-n",
                       "results/tables/main.csv", timeout=300)
    jobs = dry_run_resources(result.stdout + result.stderr)
    gpus = {}
    for rule, resources in jobs:
        gpus.setdefault(rule, set()).add(resources.get("gpu"))
    assert gpus["generate"] == {str(TENSOR_PARALLEL)} and gpus["perplexity"] == {str(TENSOR_PARALLEL)}, gpus
    assert gpus["masks"] == {"1"}, gpus
    assert gpus["grade"] == {None} and gpus["export"] == {None}, gpus
    # a job's threads reach sbatch as --cpus-per-task: no profile-wide cpus_per_task overrides them
    assert all("cpus_per_task" not in resources for _, resources in jobs), jobs[0]

    # what the plugin turns the resource into
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Job:
        resources = {"gpu": TENSOR_PARALLEL}

    assert set_gres_string(Job()).strip() == f"--gpus={TENSOR_PARALLEL}"


def test_local_scheduler_counts_the_tensor_parallel_gpus(tmp_path):
    """Locally the same `gpu` resource is what `--resources gpu=N` shares out: with 8 GPUs two
    tensor-parallel-4 jobs fit at once, and a job never asks for more than there are."""
    workdir = copy_workflow(tmp_path)
    model = {"hub": "simplescaling/s1.1-32B", "template": "s1", "size_b": 32}
    write_config(workdir / "tp.yaml", {**_grid(model, TENSOR_PARALLEL), "preflight": False})
    for available, expected in ((8, TENSOR_PARALLEL), (2, 2)):
        result = snakemake(workdir, "--cores", "8", "--resources", f"gpu={available}", "--configfile", "tp.yaml",
                           "-n", "results/tables/main.csv", timeout=300)
        gpus = {rule: resources.get("gpu") for rule, resources in dry_run_resources(result.stdout + result.stderr)}
        assert gpus["generate"] == gpus["perplexity"] == str(expected), gpus
        assert gpus["masks"] == "1", gpus


@pytest.fixture(scope="module")
def slurm_cluster():
    if shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed here; start a local cluster with `bash .ci/slurm.sh up` (root, Debian)")
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if state.returncode != 0 or "idle" not in state.stdout and "mix" not in state.stdout:
        pytest.skip(f"no idle Slurm node ({state.stdout.strip() or state.stderr.strip()}); run `bash .ci/slurm.sh up`")
    return subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout


# a local cluster without accounting database: squeue instead of sacct, quick polls, 2 CPUs
LOCAL_CLUSTER = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--set-threads", "masks=1", "generate=1", "grade=1",
    "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=1000",
    "--latency-wait", "5",
)


@pytest.mark.slurm
def test_small_run_through_the_slurm_profile(tmp_path, slurm_cluster):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "--workflow-profile", "profiles/slurm",
        "--configfile", "tests/configs/small.yaml",
        *LOCAL_CLUSTER,
        "results/tables/main.csv",
        timeout=1200,
    )
    print(result.stdout[-3000:], result.stderr[-3000:])
    table = pd.read_csv(workdir / "results" / "tables" / "main.csv")
    assert set(table["variant"]) == {"dense", "magnitude-50"}
    # the GPU-stage jobs really went through sbatch: the plugin kept their Slurm logs
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    submitted = {path.parent.parent.name.removeprefix("rule_") for path in slurm_logs.rglob("*.log")}
    assert {"masks", "export", "generate", "grade", "perplexity"} <= submitted, submitted
    # local rules stayed local
    assert "aggregate" not in submitted and "base_model" not in submitted


def _submitted(rules: set[str]) -> dict[str, str]:
    """rule -> Slurm job id of this user's queued jobs whose comment names the rule."""
    listing = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True).stdout
    found = {}
    for line in listing.splitlines():
        job, _, comment = line.partition("|")
        for rule in rules:
            if comment.startswith(f"rule_{rule}"):
                found[rule] = job
    return found


@pytest.mark.slurm
def test_tensor_parallel_jobs_ask_slurm_for_their_gpus(tmp_path, slurm_cluster):
    """A model with tensor_parallel_size 2: its generate and perplexity jobs reach the cluster
    asking for two GPUs. They are submitted held (there is no GPU to run them on) and read back
    with scontrol."""
    if "gpu" not in slurm_cluster:
        pytest.skip("the local node declares no GPUs; restart it with `bash .ci/slurm.sh down && bash .ci/slurm.sh up`")
    from pipeline.models import demo_model

    workdir = copy_workflow(tmp_path)
    demo_model.build(workdir / "tiny", {})
    write_config(workdir / "tp.yaml", _grid({"path": "tiny", "template": "qwen3", "dtype": "float32", "size_b": 0.01}, 2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    targets = ["results/generations/big/dense/aime24.parquet", "results/perplexity/big/dense.parquet"]
    command = [sys.executable, "-m", "snakemake", *targets, "--workflow-profile", "profiles/slurm",
               "--configfile", "tp.yaml", *LOCAL_CLUSTER,
               "--set-resources", "generate:slurm_extra='--hold'", "perplexity:slurm_extra='--hold'"]
    log = open(tmp_path / "snakemake.log", "w")
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    jobs: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 600
        while len(jobs) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(2)
            jobs = _submitted({"generate", "perplexity"})
        assert len(jobs) == 2, (jobs, (tmp_path / "snakemake.log").read_text()[-4000:])
        for rule, job in jobs.items():
            shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
            assert re.search(r"TresPerJob=\S*gpu:2\b", shown), (rule, shown)
            assert "JobHeldUser" in shown, (rule, shown)
    finally:
        for job in jobs.values():
            subprocess.run(["scancel", job], check=False)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # a waiting plugin ignores SIGTERM
            process.wait()
        log.close()
