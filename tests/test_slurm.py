"""The Slurm profile for real: the smallest complete run submitted to a local Slurm cluster.

`.ci/slurm.sh up` starts a single-node cluster on localhost (Debian's slurmctld, slurmd, munge);
without one this test is skipped, saying so."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from tests.workflow_util import copy_workflow, snakemake

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster():
    if shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed here; start a local cluster with `bash .ci/slurm.sh up` (root, Debian)")
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if state.returncode != 0 or "idle" not in state.stdout and "mix" not in state.stdout:
        pytest.skip(f"no idle Slurm node ({state.stdout.strip() or state.stderr.strip()}); run `bash .ci/slurm.sh up`")


def test_small_run_through_the_slurm_profile(tmp_path, slurm_cluster):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "--workflow-profile", "profiles/slurm",
        "--configfile", "tests/configs/small.yaml",
        # a local cluster without accounting database: squeue instead of sacct, quick polls,
        # and a node with 2 CPUs
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "masks=1", "generate=1", "grade=1",
        "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=1000",
        "--latency-wait", "5",
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
