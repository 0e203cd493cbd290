"""Which job held which GPU when: the leases of results/logs/gpus.jsonl (pipeline.core.gpus) as a
timeline, a row per device and a bar per lease, coloured by rule, so that idle devices show.

A file gathers the leases of every run in its folder; the figure draws the latest run's (the
`run` each lease names: the start of the Snakemake run that scheduled it).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.reporting.plots import PALETTE, save_figure  # noqa: E402


def read_leases(path: str | Path) -> list[dict]:
    """Every complete line of the lease log (a line cut short by a crash is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    leases = []
    for line in path.read_text().splitlines():
        try:
            lease = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(lease, dict) and {"devices", "start", "end"} <= lease.keys():
            leases.append(lease)
    return leases


def latest_run(leases: list[dict]) -> list[dict]:
    if not leases:
        return []
    run = max(leases, key=lambda lease: lease["start"]).get("run")
    return [lease for lease in leases if lease.get("run") == run]


def busy_fraction(leases: list[dict]) -> dict[str, float]:
    """device -> the fraction of the run's span (first lease to last end) it was leased."""
    if not leases:
        return {}
    begin = min(lease["start"] for lease in leases)
    span = max(lease["end"] for lease in leases) - begin or 1.0
    held: dict[str, float] = {}
    for lease in leases:
        for device in lease["devices"]:
            held[str(device)] = held.get(str(device), 0.0) + lease["end"] - lease["start"]
    return {device: seconds / span for device, seconds in held.items()}


def draw(leases: list[dict], stem: str | Path, devices: list[str] | None = None) -> None:
    """The timeline of `leases` as {stem}.png and {stem}.svg; `devices` adds rows for devices no
    lease used (idle all along)."""
    rows = sorted({str(d) for lease in leases for d in lease["devices"]} | set(devices or []),
                  key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * max(len(rows), 1)), layout="constrained")
    if not leases:
        ax.text(0.5, 0.5, "no GPU leases recorded: this run's jobs held no GPU", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        save_figure(fig, Path(stem))
        return
    begin = min(lease["start"] for lease in leases)
    span = max(lease["end"] for lease in leases) - begin
    scale, unit = (3600.0, "h") if span > 2 * 3600 else (60.0, "min") if span > 600 else (1.0, "s")
    rules = sorted({lease["rule"] for lease in leases})
    colour = {rule: PALETTE[i % len(PALETTE)] for i, rule in enumerate(rules)}
    for lease in leases:
        start, width = (lease["start"] - begin) / scale, (lease["end"] - lease["start"]) / scale
        for device in lease["devices"]:
            ax.broken_barh([(start, width)], (rows.index(str(device)) - 0.4, 0.8), facecolors=colour[lease["rule"]],
                           edgecolor="black" if lease.get("ended") == "killed" else "white", linewidth=0.6)
    busy = busy_fraction(leases)
    ax.set_yticks(range(len(rows)), [f"GPU {d} ({busy.get(d, 0.0):.0%})" for d in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(f"time since the first lease ({unit})")
    ax.set_title(f"GPU leases: {len(leases)} jobs on {len(rows)} device(s); in brackets, the share of the run "
                 "each was held", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[rule]) for rule in rules]
    ax.legend(handles, rules, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, Path(stem))
