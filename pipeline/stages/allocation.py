"""Stage: a variant's AlphaPruning allocation, computed and checked before any masks job.

    python -m pipeline.stages.allocation --alphas results/stats/M/alphas.parquet --spec JSON
        --out results/allocation/M/V.parquet

`spec` is pipeline.core.config.mask_slice() of a variant with allocation alphapruning. The
allocation depends on the per-matrix alphas of the stats stage and on nothing else, so it is
known once they exist: this job writes it (block, alpha, params, sparsity: one row per block)
or refuses, naming the keys to change, when a block's sparsity leaves [0, 1) (a large eps at a
high sparsity). The masks job of the variant waits for it and recomputes the same allocation
with the same function (pipeline.prune.allocation.alphapruning_blocks).
"""

from __future__ import annotations

import argparse

from pipeline.core import config
from pipeline.core.artifacts import read_table, spec_argument, write_table
from pipeline.prune import allocation


def run(alphas_path, spec: dict, out) -> None:
    alphas = read_table(alphas_path)
    problem = allocation.alphapruning_problem(alphas, spec.get("variant", "<variant>"), spec["prune"])
    if problem:
        raise config.ConfigError([problem])
    prune = spec["prune"]
    blocks = allocation.alphapruning_blocks(alphas, allocation.mean_sparsity(prune), prune["alphapruning"]["eps"])
    write_table(blocks, out, spec)
    print(f"{spec.get('variant')}: block sparsity {blocks.sparsity.min():.4f} to {blocks.sparsity.max():.4f} "
          f"over {len(blocks)} blocks")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alphas", required=True, help="results/stats/M/alphas.parquet")
    parser.add_argument("--spec", required=True, help="JSON (or @file): pipeline.core.config.mask_slice")
    parser.add_argument("--out", required=True, help="results/allocation/M/V.parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "masks", spec)
    config.or_exit(run, args.alphas, spec, args.out)


if __name__ == "__main__":
    main()
