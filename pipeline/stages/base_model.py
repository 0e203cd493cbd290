"""Stage: resolve a base model to a local folder and write its manifest.

    python -m pipeline.stages.base_model --spec JSON --out results/models/NAME/model.json

`spec` is pipeline.core.slices.model_source(): {name, hub+revision | path | gguf | demo}. Hub models
are downloaded once into the Hugging Face cache (HF_HOME); demo models are built beside the manifest;
a GGUF file is the folder convert_gguf made of it (results/models/NAME/converted). A
trained demo model is its shipped copy (models.*.demo.shipped) when that was made at the spec's
settings, else the one train_demo made.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core import slices
from pipeline.core.artifacts import spec_argument, write_json


def resolve(spec: dict, out: Path) -> dict:
    if "demo" in spec and "train" in spec["demo"]:
        shipped = slices.shipped_model(spec)
        if shipped is not None:  # made by train_demo at these settings and kept in the repository
            return {"name": spec["name"], "source": "demo", "path": str(shipped.resolve()), "revision": None}
        trained = out.parent / "trained"  # written by pipeline.stages.train_demo
        if not (trained / "config.json").exists():
            raise FileNotFoundError(f"{trained} holds no trained model; run the train_demo rule first")
        return {"name": spec["name"], "source": "demo", "path": "trained", "revision": None}
    if "demo" in spec:
        from pipeline.models import demo_model

        demo_model.build(out.parent / "weights", spec["demo"])
        # relative to the manifest, so a results folder can move
        return {"name": spec["name"], "source": "demo", "path": "weights", "revision": None}
    if "gguf" in spec:
        converted = out.parent / "converted"  # written by pipeline.stages.convert_gguf
        if not (converted / "config.json").exists():
            raise FileNotFoundError(f"{converted} holds no converted model; run the convert_gguf rule first")
        return {"name": spec["name"], "source": "gguf", "gguf": spec["gguf"], "path": "converted", "revision": None}
    if "path" in spec:
        folder = Path(spec["path"]).expanduser()
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"models.{spec['name']}.path: {folder} holds no config.json; point it at a transformers checkpoint folder")
        return {"name": spec["name"], "source": "path", "path": str(folder.resolve()), "revision": None}
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        spec["hub"], revision=spec.get("revision", "main"),
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py", "*.tiktoken"],
    )
    return {"name": spec["name"], "source": "hub", "hub": spec["hub"], "path": folder,
            "revision": Path(folder).name}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="JSON (or @file): the model's source")
    parser.add_argument("--out", required=True, help="manifest path, results/models/NAME/model.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    manifest = resolve(spec_argument(args.spec), out)
    write_json(manifest, out)
    print(f"{manifest['name']}: {manifest['path']}")


if __name__ == "__main__":
    main()
