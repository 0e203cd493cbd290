"""The GPUs of this machine, and the leases that give each GPU job devices of its own.

    python -m pipeline.core.gpus                     the devices and who holds them now
    python -m pipeline.core.gpus run --devices N --rule R [--wildcards k=v ...] -- COMMAND ...

Snakemake counts GPUs (the `gpu` resource) but on a local machine it does not say which device a
job may use, so every GPU job's command runs under `run`: it leases N devices, sets
CUDA_VISIBLE_DEVICES to them, runs the command and gives them back. A lease is an exclusive
`flock` on one file per device, taken all or nothing; the kernel drops a flock when the last
process holding it ends, also on SIGKILL, so a crashed job never leaves a stale lease and a rerun
needs no clean-up. Inside a Slurm job the lease files are that job's own, so the devices Slurm
gave a job are leased by it alone, at once. Every lease ends as one line of the run's
results/logs/gpus.jsonl; docs/GPUS.md says more.

PRUNE_TTS_FAKE_GPUS=N makes this machine count as one with N GPUs (ids 0..N-1): the leases and
the scheduling are real, the work runs on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAKE_ENV = "PRUNE_TTS_FAKE_GPUS"
RUN_ENV = "PRUNE_TTS_RUN"  # set by the Snakemake run that schedules the jobs: which run a lease belongs to
LEASE_DIR_ENV = "PRUNE_TTS_LEASE_DIR"
LEASE_LOG = "results/logs/gpus.jsonl"
POLL_S = 0.05  # how often a waiting job tries again; the lease overhead (benchmarks/gpu_leases.py)
HEARTBEAT_S = 2.0  # a holder touches its lock files this often: a killed lease's end is known to this


class DeviceError(RuntimeError):
    """A job asks for devices this machine cannot give."""


# --------------------------------------------------------------------------- the machine's devices


def fake_count() -> int | None:
    value = os.environ.get(FAKE_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise DeviceError(f"{FAKE_ENV}={value!r} is not a number of GPUs. Fix: e.g. {FAKE_ENV}=4, or unset it")
    return int(value)


def visible_devices() -> tuple[str, ...]:
    """The devices jobs may use: PRUNE_TTS_FAKE_GPUS's 0..N-1, else CUDA_VISIBLE_DEVICES when set
    (indices or UUIDs, in its order; CUDA stops at the first invalid entry, so do we), else every
    GPU nvidia-smi lists. None on a machine without NVIDIA GPUs."""
    fake = fake_count()
    if fake is not None:
        return tuple(str(i) for i in range(fake))
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            devices.append(entry)
        return tuple(devices)
    return _nvidia_smi_devices()


@functools.cache
def _nvidia_smi_devices() -> tuple[str, ...]:
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()) if out.returncode == 0 else ()


def describe() -> str:
    """Where the device list came from, for messages."""
    if fake_count() is not None:
        return f"{FAKE_ENV}={fake_count()}"
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
    return "nvidia-smi" if shutil.which("nvidia-smi") else "no nvidia-smi on PATH"


def cpu_model(config: dict, model: str) -> bool:
    """Every job of `model` runs on the CPU: it says so (models.<model>.device: cpu), or it is a
    demo model and PRUNE_TTS_FAKE_GPUS does not ask it to behave as a real one."""
    spec = config["models"][model]
    return spec.get("device") == "cpu" or ("demo" in spec and not fake_count())


def job_devices(config: dict, rule: str, model: str) -> int:
    """Devices one job of `rule` for `model` holds: one for the block-by-block stages (masks,
    statistics), generation.vllm.tensor_parallel_size for the stages that hold the whole model in
    vLLM (generate, perplexity), none for the others. A demo model runs on the CPU and holds none,
    unless PRUNE_TTS_FAKE_GPUS asks it to behave as a real model; so does a model with
    models.<model>.device: cpu, always."""
    if cpu_model(config, model):
        return 0
    if rule in ("masks", "stats_activations"):
        return 0 if config["pruning"]["device"] == "cpu" else 1
    if rule in ("generate", "perplexity"):
        return int(config["generation"]["vllm"]["tensor_parallel_size"])
    return 0


def job_threads(config: dict, rule: str, model: str) -> int:
    """CPU threads a job of `rule` for `model` is scheduled with. A GPU job's work is on its
    devices and one core feeds them, so --cores never holds GPUs idle. A demo model's jobs take one
    too: its matrices are too small to split across threads (the outputs are the same with one or
    two), so two jobs side by side finish the demo's generation about a third sooner than one job
    on two threads. A real model on the CPU (pruning.device: cpu) takes two."""
    if job_devices(config, rule, model) or "demo" in config["models"][model]:
        return 1
    return 2


# --------------------------------------------------------------------------- leases


def lease_dir() -> Path:
    """One folder of lock files per user and machine, so that two workflows on one node share its
    devices; inside a Slurm job its own (Slurm numbers each job's devices from 0)."""
    if os.environ.get(LEASE_DIR_ENV):
        return Path(os.environ[LEASE_DIR_ENV])
    name = f"prune-tts-gpus-{os.getuid()}"
    if os.environ.get("SLURM_JOB_ID"):
        name += f"-slurm{os.environ['SLURM_JOB_ID']}"
    if fake_count() is not None:
        name += "-fake"
    return Path(tempfile.gettempdir()) / name


def _lock_path(folder: Path, device: str) -> Path:
    return folder / f"gpu-{device}.lock"


def _record_line(record: dict) -> dict:
    devices = [int(d) if d.isdigit() else d for d in record["devices"]]
    return {**record, "devices": devices}


def append_line(log: str | Path, record: dict) -> None:
    """One JSON line, appended in one write under a lock: leases of parallel jobs never interleave."""
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(_record_line(record), sort_keys=True) + "\n").encode()
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


class Lease:
    """Devices held by this process (and the command it runs) until `release`."""

    def __init__(self, devices: list[str], handles: list, record: dict):
        self.devices, self.handles, self.record = devices, handles, record

    def heartbeat(self) -> None:
        for handle in self.handles:
            os.utime(handle.fileno())

    def release(self, log: str | Path | None) -> dict:
        record = {**self.record, "end": round(time.time(), 3)}
        if log:
            append_line(log, record)
        for handle in self.handles:
            handle.truncate(0)  # an empty lock file: nobody to report as killed
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self.handles = []
        return record


def _close_out_killed(handle, folder: Path, done: set) -> None:
    """A lock file that still names a holder was left by a lease whose process was killed: its
    line goes to that run's log now (once, whichever of its devices is taken first), its end the
    holder's last heartbeat."""
    handle.seek(0)
    text = handle.read().decode(errors="replace").strip()
    if not text or text in done:
        return
    done.add(text)
    try:
        record = json.loads(text)
        log = record.pop("log")
    except (json.JSONDecodeError, KeyError, TypeError):
        return
    if record.get("start") is None:
        return
    # the file's clock is coarser than time.time(): never before the start
    record.update(end=round(max(os.fstat(handle.fileno()).st_mtime, record["start"]), 3), ended="killed")
    with contextlib.suppress(OSError):
        append_line(log, record)
    for other in folder.glob("gpu-*.lock"):  # the same lease's other devices: closed out once
        # a device held now (by this acquisition too) is skipped: its holder rewrites the file
        with contextlib.suppress(OSError), open(other, "rb+") as peer:
            fcntl.flock(peer, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if peer.read().decode(errors="replace").strip() == text:
                peer.truncate(0)
            fcntl.flock(peer, fcntl.LOCK_UN)


def try_acquire(count: int, record: dict, log: str | Path | None, folder: Path | None = None,
                devices: tuple[str, ...] | None = None) -> Lease | None:
    """`count` free devices, all or none (so two jobs never hold half of what each needs)."""
    folder = folder or lease_dir()
    devices = visible_devices() if devices is None else devices
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mutex", "ab") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        taken, handles = [], []
        for device in devices:
            handle = open(_lock_path(folder, device), "ab+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            taken.append(device)
            handles.append(handle)
            if len(taken) == count:
                break
        if len(taken) < count:
            for handle in handles:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return None
        full = {**record, "devices": taken, "start": round(time.time(), 3)}
        holder = json.dumps({**full, "log": str(Path(log).resolve()) if log else None}).encode()
        killed: set = set()
        for handle in handles:
            _close_out_killed(handle, folder, killed)
            handle.truncate(0)
            handle.write(holder)
            handle.flush()
        return Lease(taken, handles, full)


def holders(folder: Path | None = None) -> dict[str, dict | None]:
    """device -> the record of the lease holding it now, or None when it is free."""
    folder = folder or lease_dir()
    found = {}
    for device in visible_devices():
        path = _lock_path(folder, device)
        found[device] = None
        if not path.exists():
            continue
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
            except BlockingIOError:
                text = handle.read().decode(errors="replace")
                try:
                    found[device] = json.loads(text)
                except json.JSONDecodeError:
                    found[device] = {}
    return found


def acquire(count: int, record: dict, log: str | Path | None, folder: Path | None = None) -> Lease:
    """Wait until `count` devices are free and lease them; refuse at once what can never be given."""
    devices = visible_devices()
    if count > len(devices):
        raise DeviceError(
            f"this {record.get('rule', 'GPU')} job needs {count} GPU(s) and this machine has {len(devices)} "
            f"({describe()}). Fix: lower generation.vllm.tensor_parallel_size, or run on a node with more GPUs")
    said = False
    while True:
        lease = try_acquire(count, record, log, folder, devices)
        if lease is not None:
            return lease
        if not said:
            busy = {d: h for d, h in holders(folder).items() if h}
            print(f"waiting for {count} of {len(devices)} GPU(s); held now: "
                  + ", ".join(f"{d} by {h.get('rule')} {h.get('wildcards')}" for d, h in busy.items()), flush=True)
            said = True
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- running a job under a lease


def run(command: list[str], count: int, record: dict, log: str | Path | None) -> int:
    """Run `command` with `count` leased devices in CUDA_VISIBLE_DEVICES; its exit status."""
    if count == 0:
        os.execvp(command[0], command)  # nothing to lease: the command replaces this process
    lease = acquire(count, record, log)
    waited = lease.record["start"] - record["requested"]
    print(f"leased GPU(s) {','.join(lease.devices)} after {waited:.2f} s ({describe()})", flush=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(lease.devices), "PRUNE_TTS_LEASED_GPUS": str(count)}
    # the command inherits the locks: if this process is killed, the devices stay leased while
    # the command still runs on them, and are free the moment both have ended
    child = subprocess.Popen(command, env=env, pass_fds=[h.fileno() for h in lease.handles])

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            status = child.wait(timeout=HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            lease.heartbeat()
    lease.record["exit_status"] = status
    lease.release(log)
    return status if status >= 0 else 128 - status


def _wildcards(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        argv, command = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    else:
        command = []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action")
    runner = sub.add_parser("run", help="run a command on leased devices")
    runner.add_argument("--devices", type=int, required=True, help="how many devices the job holds")
    runner.add_argument("--rule", required=True)
    runner.add_argument("--wildcards", nargs="*", default=[], help="the job's wildcards as name=value")
    runner.add_argument("--log", default=LEASE_LOG, help="where the lease's line goes (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            if not command:
                parser.error("give the command after --")
            record = {"rule": args.rule, "wildcards": _wildcards(args.wildcards), "run": os.environ.get(RUN_ENV),
                      "host": socket.gethostname(),
                      "pid": os.getpid(), "requested": round(time.time(), 3)}
            return run(command, args.devices, record, args.log)
        devices = visible_devices()
        print(f"{len(devices)} GPU(s) ({describe()}); leases in {lease_dir()}")
        for device, holder in holders().items():
            print(f"  {device}: " + ("free" if holder is None else f"{holder.get('rule')} {holder.get('wildcards')} "
                                     f"pid {holder.get('pid')} since {holder.get('start')}"))
        return 0
    except DeviceError as error:
        print(f"prune-tts: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
