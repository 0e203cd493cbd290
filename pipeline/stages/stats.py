"""Stage: per-model statistics shared by every variant that needs them.

    python -m pipeline.stages.stats --kind KIND --model MANIFEST [--calibration CAL.parquet]
        --spec JSON --out results/stats/M/KIND[-CAL].parquet

KIND: activations, alphas, block_influence or layerif, one row per matrix or block (the columns
of each: pipeline.prune.stats).
`spec` is {model, dtype, device} (plus the calibration set's name where one is read). The kind
is stored in the artifact's provenance.
"""

from __future__ import annotations

import argparse

from pipeline.core import config
from pipeline.core.artifacts import spec_argument, write_table
from pipeline.data.calibration import read_calibration
from pipeline.models.lazy_model import load_lazily
from pipeline.models.models import load_model, resolve_device
from pipeline.prune.stats import KINDS, NEEDS_CALIBRATION, compute


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--calibration", help="calibration Parquet, for " + ", ".join(NEEDS_CALIBRATION))
    parser.add_argument("--spec", required=True, help="JSON (or @file): {model, dtype, device[, calibration]}")
    parser.add_argument("--out", required=True, help="results/stats/M/KIND[-CAL].parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "stats", spec)  # the workflow's own refusals, before loading
    samples = read_calibration(args.calibration) if args.calibration else None
    # LayerIF needs the whole model at once; the others read one block at a time from disk
    model = (load_model if args.kind == "layerif" else load_lazily)(args.model, dtype=spec.get("dtype", "float32"))
    table = compute(args.kind, model, samples, resolve_device(spec.get("device", "cpu")))
    write_table(table, args.out, spec, kind=args.kind)


if __name__ == "__main__":
    from pipeline.core.environment import lean_process

    lean_process()
    main()
