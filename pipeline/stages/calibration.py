"""Stage: sample calibration sequences with the model's own tokenizer.

    python -m pipeline.stages.calibration --model results/models/M/model.json --spec JSON
        --out results/calibration/M/C.parquet

`spec` is pipeline.core.slices.calibration_slice(): {model, calibration: {source, path, samples,
length, seed}}. One row per sequence: sample (int), input_ids (list of int32). How each source
(c4, wikitext2, pg19, file, demo_task) is drawn: pipeline.data.calibration.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from pipeline.core import config
from pipeline.core.artifacts import spec_argument, write_table
from pipeline.data.calibration import sample
from pipeline.models.models import load_tokenizer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model manifest (results/models/M/model.json) or folder")
    parser.add_argument("--spec", required=True, help="JSON (or @file): pipeline.core.slices.calibration_slice")
    parser.add_argument("--out", required=True, help="results/calibration/M/C.parquet")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "calibration", spec)  # the workflow's own refusals, before loading
    sequences = sample({**spec["calibration"], "task": spec.get("task", {})}, load_tokenizer(args.model))
    table = pd.DataFrame({"sample": np.arange(len(sequences)),
                          "input_ids": [np.asarray(s, dtype=np.int32) for s in sequences]})
    write_table(table, args.out, spec, seed=spec["calibration"]["seed"])
    print(f"{len(sequences)} sequences of {min(map(len, sequences))}-{max(map(len, sequences))} tokens")


if __name__ == "__main__":
    main()
