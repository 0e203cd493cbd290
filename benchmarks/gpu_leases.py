"""What a GPU lease costs the scheduling: a grid of many short jobs on fake GPUs, run by Snakemake
twice, once with each job under `python -m pipeline.core.gpus run` (its own devices, as the
workflow's GPU rules run) and once as plain Snakemake jobs counted against the same `gpu`
resource (the reference: no device is named). Each job's command records when it started and
ended; the gap from a job's end to the start of the next job on the freed slot is the scheduling
overhead, printed side by side with its ratio.

    python benchmarks/gpu_leases.py [--jobs 48] [--gpus 4] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SNAKEFILE = textwrap.dedent('''
    JOBS = int(config["jobs"])
    PREFIX = "python -m pipeline.core.gpus run --devices {resources.gpu} --rule job --wildcards i={wildcards.i} -- " \\
        if config["leases"] else ""

    rule all:
        input: expand("done/{i}.json", i=range(JOBS))

    rule job:
        output: "done/{i}.json"
        threads: 1
        resources: gpu=1
        shell: PREFIX + "python -c 'import json, sys, time; t = time.time(); time.sleep({config[seconds]}); " \\
            "json.dump([t, time.time()], open(sys.argv[1], \\"w\\"))' {output}"
''')


def run(workdir: Path, jobs: int, gpus: int, seconds: float, leases: bool) -> tuple[list[tuple[float, float]], float]:
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    env = {**os.environ, "PRUNE_TTS_FAKE_GPUS": str(gpus), "PRUNE_TTS_LEASE_DIR": str(workdir / "leases"),
           "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(gpus), "--resources", f"gpu={gpus}",
                    "--config", f"jobs={jobs}", f"seconds={seconds}", f"leases={int(leases)}", "--quiet", "all"],
                   cwd=workdir, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    spans = [tuple(json.loads((workdir / "done" / f"{i}.json").read_text())) for i in range(jobs)]
    return spans, elapsed


def slot_gaps(spans: list[tuple[float, float]], slots: int) -> list[float]:
    """For each job that had to wait for a slot: its start less the end of the job whose slot it
    took (the latest end before its start among the free slots)."""
    free = [float("-inf")] * slots
    gaps = []
    for start, end in sorted(spans):
        ready = [t for t in free if t <= start] or [min(free)]
        freed = max(ready)
        if freed > float("-inf"):
            gaps.append(start - freed)
        free.remove(freed)
        free.append(end)
    return gaps


def device_gaps(leases: list[dict]) -> list[float]:
    """Per device, from the lease log: the next lease's start less the previous lease's end."""
    per_device: dict[int, list[tuple[float, float]]] = {}
    for lease in leases:
        for device in lease["devices"]:
            per_device.setdefault(device, []).append((lease["start"], lease["end"]))
    gaps = []
    for spans in per_device.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long each job's command runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        plain, plain_s = run(Path(scratch) / "plain", args.jobs, args.gpus, args.seconds, leases=False)
        leased, leased_s = run(Path(scratch) / "leased", args.jobs, args.gpus, args.seconds, leases=True)
        log = Path(scratch) / "leased" / "results" / "logs" / "gpus.jsonl"
        leases = [json.loads(line) for line in log.read_text().splitlines()]
    reference, measured = slot_gaps(plain, args.gpus), slot_gaps(leased, args.gpus)
    print(f"{args.jobs} jobs of {args.seconds} s on {args.gpus} fake GPUs, Snakemake --cores {args.gpus}")
    print(f"{'':44} {'plain Snakemake':>16} {'with leases':>12} {'ratio':>7}")
    rows = [("median gap, a job's end to the next start (s)", statistics.median(reference), statistics.median(measured)),
            ("90th percentile gap (s)", statistics.quantiles(reference, n=10)[-1], statistics.quantiles(measured, n=10)[-1]),
            ("whole run (s)", plain_s, leased_s)]
    for name, ref, new in rows:
        print(f"{name:44} {ref:16.3f} {new:12.3f} {new / ref:7.2f}")
    gaps = device_gaps(leases)
    waits = [lease["start"] - lease["requested"] for lease in leases]
    print(f"per device, from the lease log: median gap {statistics.median(gaps):.3f} s between leases; "
          f"median wait for a lease once the job started {statistics.median(waits):.3f} s")


if __name__ == "__main__":
    main()
