"""Stage: dequantize a model's GGUF file once into a safetensors checkpoint folder.

    python -m pipeline.stages.convert_gguf --spec JSON --out results/models/NAME/converted

`spec` is pipeline.core.config.model_source() of a model with `gguf`: {name, gguf: {path} or
{package, file}}. The folder gets float32 safetensors (every dequantized value exact: see
pipeline/models/gguf.py), config, generation config, and the tokenizer with its chat template;
it appears complete or not at all. The base_model manifest then points at it.
"""

from __future__ import annotations

import argparse
import time

from pipeline.core import config
from pipeline.core.artifacts import spec_argument
from pipeline.models import gguf


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="JSON (or @file): the model's source, with gguf")
    parser.add_argument("--out", required=True, help="checkpoint folder, results/models/NAME/converted")
    args = parser.parse_args(argv)
    spec = spec_argument(args.spec)
    config.or_exit(config.check_stage, "convert_gguf", spec)
    key = f"models.{spec.get('name', '<model>')}.gguf"
    config.or_exit(_refuse, gguf.problems(spec["gguf"], key))  # before reading any tensor
    path = gguf.locate(spec["gguf"], key)
    info = gguf.header(path)
    print(f"{path}: {info['architecture']}, {info['tensors']} tensors ({', '.join(info['tensor_types'])}); "
          "dequantizing to float32", flush=True)
    start = time.perf_counter()
    gguf.convert(path, args.out)
    print(f"{args.out}: written in {time.perf_counter() - start:.1f} s")


def _refuse(problems: list[str]) -> None:
    if problems:
        raise config.ConfigError(problems)


if __name__ == "__main__":
    main()
