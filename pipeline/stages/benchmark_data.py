"""Stage: one benchmark's problems as the normalised table (pipeline.data.benchmarks).

    python -m pipeline.stages.benchmark_data --spec JSON --out results/data/NAME.parquet

The spec is `pipeline.core.slices.benchmark_slice`: {benchmark, definition}.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.core.artifacts import spec_argument, write_table
from pipeline.data.benchmarks import BenchmarkError, letter_spread, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="pipeline.core.slices.benchmark_slice as JSON (or @file)")
    parser.add_argument("--out", required=True, help="output Parquet: id, problem, answer, choices")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    name, definition = spec["benchmark"], spec["definition"]
    try:
        table = load(name, definition)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_table(table, args.out, spec)
    print(f"{name}: {len(table)} problems, grader {definition.get('grader')}, written to {args.out}")
    if definition.get("grader") == "choice":
        print(f"correct letter per position under seed 0: {dict(sorted(letter_spread(table, 0).items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
