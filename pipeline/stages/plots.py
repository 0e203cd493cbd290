"""Stage: figures of the main table, as PNG and SVG (pipeline.reporting.plots draws them).

    python -m pipeline.stages.plots --table results/tables/main.csv --spec JSON --out-dir results/plots \
        [--claims results/tables/claims-*.csv]

Per model (the spec is `pipeline.core.slices.table_slice`): accuracy_vs_budget-{model}.{png,svg},
accuracy_vs_sparsity-{model}.{png,svg} and accuracy_vs_compute-{model}.{png,svg}; per family of
trained demo models with several training seeds, training_seeds-{family}.{png,svg}. With --claims,
per model and benchmark (and pooled) the forest plot of its claims table, forest-{model}-*.{png,svg}. With --leases,
the run's GPU leases as gpu_timeline.{png,svg} (pipeline.reporting.gpu_timeline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.core import gpus
from pipeline.core.artifacts import spec_argument
from pipeline.reporting import gpu_timeline
from pipeline.reporting.claims import POOLED
from pipeline.reporting.plots import (accuracy_vs_budget, accuracy_vs_compute, accuracy_vs_sparsity, forest, plot_paths,
                                      training_seed_spread)
from pipeline.reporting.tables import FORMATS, forest_paths, seed_families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="main table CSV (pipeline.stages.aggregate)")
    parser.add_argument("--spec", required=True, help="pipeline.core.slices.table_slice as JSON (or @file)")
    parser.add_argument("--out-dir", required=True, help="folder for the figures")
    parser.add_argument("--claims", nargs="*", default=[], help="claims tables (pipeline.reporting.claims)")
    parser.add_argument("--leases", help="the run's GPU lease log (results/logs/gpus.jsonl)")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    table = pd.read_csv(args.table)
    out_dir = Path(args.out_dir)
    for model in spec["models"]:
        accuracy_vs_budget(table, model, spec, out_dir)
        accuracy_vs_sparsity(table, model, spec, out_dir)
        accuracy_vs_compute(table, model, spec, out_dir)
        print(f"{model}: " + ", ".join(str(p) for p in plot_paths(out_dir, model)))
    claims = pd.concat([pd.read_csv(p) for p in args.claims], ignore_index=True) if args.claims else None
    for model in spec["models"] if claims is not None else []:
        benchmarks = spec["benchmarks"] + ([POOLED] if len(spec["benchmarks"]) > 1 else [])
        for benchmark, path in zip(benchmarks, forest_paths(out_dir, model, spec["benchmarks"])[::len(FORMATS)]):
            forest(claims, model, benchmark, spec, path.with_suffix(""))
        print(f"{model}: forest plots of its claims -> {out_dir}/forest-{model}-*")
    for family in seed_families(spec.get("training", {})):
        training_seed_spread(table, family, spec, out_dir)
        print(f"training seeds of {family}: {out_dir / f'training_seeds-{family}'}.png/.svg")
    if args.leases:
        leases = gpu_timeline.latest_run(gpu_timeline.read_leases(args.leases))
        gpu_timeline.draw(leases, out_dir / "gpu_timeline", devices=list(gpus.visible_devices()))
        print(f"GPU timeline: {len(leases)} leases of the latest run -> {out_dir / 'gpu_timeline'}.png/.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
