"""Print the provenance of an artifact: python -m pipeline.core.provenance FILE [FILE ...]"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.core.artifacts import read_provenance


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", help="Parquet artifacts written by the workflow")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            info = read_provenance(path)
        except (OSError, ValueError) as error:
            print(f"{path}: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"== {path}")
        print(json.dumps(info, indent=2, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main())
