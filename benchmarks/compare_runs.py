"""What moved between two runs of one config (two machines, thread counts or kernel sets).

    python benchmarks/compare_runs.py RESULTS_A RESULTS_B

Run the demo on two machines (or twice on one, e.g. with ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 for the second), then compare the two
results folders: masks (the zeroed weights), the checkpoints' weights, every generated row and
every table cell, with the largest move as a share of the tolerance the documented figures are
held to (pipeline.reporting.reproduction.tolerance; docs/DEMO.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.reporting.reproduction import compare_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs=2, help="two results folders of the same config")
    args = parser.parse_args(argv)
    print(json.dumps(compare_runs(*args.results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
