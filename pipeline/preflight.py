"""Checks run once before any job: every model and data set that a scheduled job needs can be
reached, and a GPU is there for the jobs that need one. All problems are reported together."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import config as cfg
from pipeline import hub

CALIBRATION_REPOS = {"c4": "allenai/c4", "pg19": "deepmind/pg19", "wikitext2": "Salesforce/wikitext"}


class PreflightError(RuntimeError):
    pass


def scheduled(workflow) -> list[tuple[str, dict]]:
    """(rule name, wildcards) of every job that will run."""
    return [(job.rule.name, dict(job.wildcards)) for job in workflow.dag.needrun_jobs()]


def problems(config: dict, jobs: list[tuple[str, dict]], local: bool = True) -> list[str]:
    found: dict[str, str] = {}
    for rule, wildcards in jobs:
        if rule == "base_model":
            model = config["models"][wildcards["model"]]
            key = f"models.{wildcards['model']}"
            if "hub" in model:
                message = hub.problem(model["hub"], model.get("revision"), "model", f"{key}.hub",
                                      f"replace hub by path: a local checkpoint folder ({key}.path)")
            elif "path" in model and not (Path(model["path"]).expanduser() / "config.json").exists():
                message = f"{key}.path: {model['path']} holds no config.json; point it at a transformers checkpoint folder"
            else:
                message = None
            if message:
                found[key] = message
        elif rule == "benchmark_data":
            from pipeline.benchmarks import preflight as benchmark_problem, resolve_definition

            name = wildcards["benchmark"]
            message = benchmark_problem(resolve_definition(name, config["benchmarks"][name]), name)
            if message:
                found[f"benchmarks.{name}"] = message
        elif rule == "calibration":
            name = wildcards["calibration"]
            spec = config["calibration"][name]
            key = f"calibration.{name}"
            if spec["source"] == "demo_task":
                pass  # generated on the spot
            elif spec["source"] == "file":
                if not Path(spec["path"]).exists():
                    found[key] = f"{key}.path: {spec['path']} does not exist; give a local text file or use source c4 or pg19"
            elif key not in found:
                message = hub.problem(CALIBRATION_REPOS[spec["source"]], None, "dataset", f"{key}.source",
                                      f"set {key}.source: file and {key}.path to a local text file")
                if message:
                    found[key] = message
        elif rule == "perplexity" and config["perplexity"]["text"] == "wikitext2" and "perplexity.text" not in found:
            message = hub.problem(CALIBRATION_REPOS["wikitext2"], None, "dataset", "perplexity.text",
                                  "set perplexity.text to a local text file, or perplexity.enabled: false")
            if message:
                found["perplexity.text"] = message
        elif rule == "perplexity" and config["perplexity"]["text"] != "wikitext2":
            if not Path(config["perplexity"]["text"]).exists():
                found["perplexity.text"] = f"perplexity.text: {config['perplexity']['text']} does not exist; give a local text file or wikitext2"
        elif _needs_gpu(config, rule) and local and "demo" not in config["models"][wildcards["model"]]:
            if not _gpu_visible() and "gpu" not in found:
                found["gpu"] = (f"job {rule} for model {wildcards['model']} needs a GPU and none is visible "
                                "(torch.cuda.is_available() is False). Fix: run on a GPU machine, submit with "
                                "--workflow-profile profiles/slurm, or set pruning.device: cpu for masks; "
                                "or try the offline demo (config/demo.yaml)")
    return [found[key] for key in sorted(found)]


def _needs_gpu(config: dict, rule: str) -> bool:
    return rule == "generate" or (rule == "masks" and config["pruning"]["device"] == "cuda")


def _gpu_visible() -> bool:
    if os.environ.get("PRUNE_TTS_ASSUME_GPU") == "1":
        return True
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def check(config: dict, workflow) -> None:
    if not config.get("preflight", True):
        return
    executor = getattr(getattr(workflow, "executor_plugin", None), "name", "local")
    found = problems(config, scheduled(workflow), local=executor in ("local", "dryrun", None))
    if found:
        raise PreflightError(
            "prune-tts cannot start: " + str(len(found)) + " problem(s) found before running any job:\n  - "
            + "\n  - ".join(found)
        )
