"""Checks run once the jobs are known and before any of them starts, in dry runs as in real
runs: every model and data set a scheduled job needs can be reached and read, every length fits
the model's context, every layer count its depth, and a GPU is there for the jobs that need one
locally. All problems are reported together, one line each with the config key and the fix.

What the jobs need is read without running them: a local model's config.json, a Hub model's
config.json alone (no weights) when the Hub answers, local benchmark files, the tokenizer and
benchmark table once they are on disk. What cannot be read yet is skipped, never guessed.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import config as cfg
from pipeline.core import benchmark_defs, config_checks, gpus, hub, slices

CALIBRATION_REPOS = {"c4": "allenai/c4", "pg19": "deepmind/pg19", "wikitext2": "Salesforce/wikitext"}
# rules whose jobs run where the executor sends them (a GPU node under Slurm)
LOCAL_EXECUTORS = ("local", "dryrun", "touch")


class PreflightError(cfg.ConfigError):
    title = "cannot start"

    def __init__(self, problems: list[str]):
        super().__init__(problems)
        # models and data sets out of reach, or no GPU: the demo needs neither
        if any(" hub" in p or "Hub" in p or "GPU" in p for p in self.problems):
            self.hint = hub.DEMO_HINT[0].upper() + hub.DEMO_HINT[1:]


# --------------------------------------------------------------------------- the hook


def install(config: dict, workflow) -> None:
    """Right after Snakemake has built the DAG of jobs, before it runs any of them: give a local
    run this machine's GPUs to schedule (`share_devices`), then run `check`.

    Snakemake skips `onstart` in dry runs, so both hang on the DAG step that every run and dry run
    takes (and --lint, --report or --list-rules do not). Jobs that Snakemake starts in their own
    process (under Slurm, for instance) parse this file again: they do neither."""
    if _mode(workflow) != "DEFAULT":
        return
    os.environ[gpus.RUN_ENV] = f"{time.time():.3f}"  # the jobs' GPU leases name this run
    build = getattr(workflow, "_build_dag", None)
    if build is None:  # a Snakemake without this step: real runs still check before their jobs
        if config["preflight"]:
            workflow.onstart(lambda log: cfg.or_exit(check, config, workflow, True, gpu_limit(workflow)))
        return

    def build_then_check():
        build()
        if workflow.executor_plugin is not None and not workflow.touch:
            local = intended_executor(workflow) in LOCAL_EXECUTORS
            limit = gpu_limit(workflow)
            if local and limit is None:
                workflow.register_resource("gpu", len(cfg.or_exit(machine_devices)))
            if config["preflight"]:
                cfg.or_exit(check, config, workflow, local, limit)

    workflow._build_dag = build_then_check


def gpu_limit(workflow) -> int | None:
    """The `gpu` resource the user set (--resources gpu=K, or a profile), else None: then a local
    run schedules as many GPU jobs at once as the machine has devices, each job holding devices
    of its own (pipeline.core.gpus)."""
    value = getattr(workflow.global_resources.get("gpu"), "value", None)  # a Resource, its value None when unset
    return None if value is None else int(value)


def machine_devices() -> tuple[str, ...]:
    try:
        return gpus.visible_devices()
    except gpus.DeviceError as error:
        raise PreflightError([str(error)]) from None


def _mode(workflow) -> str:
    mode = getattr(workflow, "exec_mode", "DEFAULT")
    return str(getattr(mode, "name", mode)).upper()


def intended_executor(workflow) -> str:
    """The executor the user asked for. A dry run runs through Snakemake's "dryrun" executor and
    only DAGApi.execute_workflow still holds the intended one (slurm from profiles/slurm, say)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "execute_workflow" and isinstance(frame.f_locals.get("executor"), str):
            return frame.f_locals["executor"]
        frame = frame.f_back
    return getattr(workflow.executor_plugin, "name", None) or "local"


def scheduled(workflow) -> list[tuple[str, dict]]:
    """(rule name, wildcards) of every job that will run."""
    return [(job.rule.name, dict(job.wildcards)) for job in workflow.dag.needrun_jobs()]


def check(config: dict, workflow, local: bool, limit: int | None) -> None:
    found = problems(config, scheduled(workflow), local=local, gpu_limit=limit)
    if found:
        raise PreflightError(found)


# --------------------------------------------------------------------------- files


def short_text_problem(path: str, length: int) -> str | None:
    """A perplexity text too short for one window, known from its size before any job: every
    tokenizer's token spans at least one byte (one more for a start token), so a file of fewer
    than length - 1 bytes cannot fill a window of `length` tokens; the perplexity stage, after
    the pruning, would refuse it."""
    size = Path(path).expanduser().stat().st_size
    if size + 1 >= length:
        return None
    return (f"perplexity.text: {cfg.shown(path)} holds {size} bytes, fewer tokens than one window of "
            f"perplexity.length {length}. Fix: lower perplexity.length below {size + 1} or give a longer text")


def file_problem(key: str, path: str, fix: str, text: bool = False) -> str | None:
    """None when `path` is a readable file (UTF-8 text if `text`), else a line naming `key`."""
    where = cfg.shown(path)
    source = Path(path).expanduser()
    if not source.exists():
        return f"{key}: {where} does not exist. Fix: {fix}"
    if source.is_dir():
        return f"{key}: {where} is a folder, not a file. Fix: {fix}"
    try:
        with open(source, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError as error:
        return f"{key}: {where} cannot be read ({error.strerror or type(error).__name__}). Fix: check its permissions, or {fix}"
    if text:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            return f"{key}: {where} is not UTF-8 text. Fix: convert it to UTF-8 text, or {fix}"
    if not head:
        return f"{key}: {where} is empty. Fix: {fix}"
    return None


def manifest(model: str) -> Path:
    return Path(f"results/models/{model}/model.json")


# --------------------------------------------------------------------------- what a model is


@dataclass
class Facts:
    """What the checks need to know of a base model; None where it cannot be known yet."""

    depth: int | None = None
    context: int | None = None
    folder: Path | None = None  # a local folder with its tokenizer, once there is one
    data: dict | None = None  # config.json itself


def read_model_config(path: Path) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    # multimodal checkpoints keep the language model's settings apart
    return data.get("text_config") or data


def _facts_from(config_json: Path, folder: Path | None) -> Facts:
    return _facts(read_model_config(config_json), folder)


def _facts(data: dict, folder: Path | None) -> Facts:
    depth = data.get("num_hidden_layers") or data.get("n_layer")
    context = data.get("max_position_embeddings") or data.get("n_positions")
    return Facts(depth=depth, context=context, folder=folder, data=data)


def model_facts(config: dict, name: str, reachable: bool) -> tuple[Facts, str | None]:
    """The model's depth and context, and a problem line when its config.json is unreadable."""
    spec = config["models"][name]
    key = f"models.{name}"
    if manifest(name).exists():  # already resolved: the local copy says it all
        from pipeline.models.models import model_dir

        try:
            folder = model_dir(manifest(name))
            return _facts_from(folder / "config.json", folder), None
        except (OSError, ValueError, KeyError):
            pass  # a stale manifest: its job reruns and says why
    if "demo" in spec:  # not built yet: its settings say what it will be
        from pipeline.models.demo_model import POSITIONS

        return Facts(depth=spec["demo"]["layers"], context=POSITIONS), None
    if "gguf" in spec:  # not converted yet: the file's header says what it will be
        from pipeline.models import gguf

        data = gguf.planned_config(spec["gguf"])
        return (Facts(), None) if data is None else (_facts(data, None), None)
    if "path" in spec:
        folder = Path(spec["path"]).expanduser()
        problem = file_problem(f"{key}.path", str(folder / "config.json"),
                               "point path at a transformers checkpoint folder (the one holding config.json)")
        if problem:
            return Facts(), problem
        try:
            return _facts_from(folder / "config.json", folder), None
        except (ValueError, AttributeError) as error:
            return Facts(), (f"{key}.path: {cfg.shown(folder / 'config.json')} is not a model's config.json "
                             f"({type(error).__name__}). Fix: point path at a transformers checkpoint folder")
    if not reachable:
        return Facts(), None  # the reachability problem is reported; nothing else can be known
    try:  # config.json alone, from the Hub or (offline) the local cache; never the weights
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(spec["hub"], "config.json", revision=spec.get("revision"),
                               local_files_only=hub.offline())
        return _facts_from(Path(path), None), None
    except Exception:  # noqa: BLE001 - unknown is not wrong: skip the checks that need it
        return Facts(), None


def context_problems(config: dict, model: str, facts: Facts, jobs: set[str]) -> list[str]:
    """Lengths that do not fit model `model`'s context, for the kinds of job scheduled."""
    if not facts.context:
        return []
    context, out = facts.context, []
    fix = f"set it to at most {context}"
    calibrations = {w["calibration"] for rule, w in _jobs_of(jobs, model) if rule == "calibration"}
    for name in sorted(calibrations):
        length = config["calibration"][name]["length"]
        if length > context:
            out.append(f"calibration.{name}.length: {length} tokens, longer than model {model}'s context of "
                       f"{context} tokens. Fix: {fix}")
    rules = {rule for rule, _ in _jobs_of(jobs, model)}
    if "perplexity" in rules and config["perplexity"]["length"] > context:
        out.append(f"perplexity.length: windows of {config['perplexity']['length']} tokens, longer than model "
                   f"{model}'s context of {context} tokens. Fix: {fix}")
    limit = config["generation"]["vllm"]["max_model_len"]
    if "generate" in rules and limit > context:
        out.append(f"generation.vllm.max_model_len: {limit} tokens, more than model {model}'s context of {context} "
                   f"(vLLM refuses it). Fix: {fix}, and keep the largest budget plus answer_max_tokens under it")
    return out


def _jobs_of(jobs, model):
    return [(rule, dict(w)) for rule, w in jobs if dict(w).get("model") == model]


def layer_problems(config: dict, model: str, facts: Facts, variants: set[str]) -> list[str]:
    """Layer counts and LayerIF score files that do not fit model `model`'s depth."""
    if not facts.depth:
        return []
    scheduled_config = {**config, "variants": {v: config["variants"][v] for v in sorted(variants)}}
    out = config_checks.depth_problems(scheduled_config, model, facts.depth)
    for variant in sorted(variants):
        scores = config["variants"][variant].get("layerif", {}).get("scores")
        if config["variants"][variant].get("allocation") != "layerif" or not scores or not Path(scores).is_file():
            continue
        from pipeline.prune.allocation import read_layerif_scores

        key = f"variants.{variant}.layerif.scores"
        try:
            blocks = len(read_layerif_scores(scores))
        except (ValueError, OSError) as error:
            out.append(f"{key}: {error}. Fix: give one row per block and group (columns block, group, score)")
            continue
        if blocks != facts.depth:
            out.append(f"{key}: {cfg.shown(scores)} scores {blocks} blocks, model {model} has {facts.depth}. "
                       "Fix: give the scores of this model, or remove scores to compute them")
    return out


def prompt_problem(config: dict, model: str, facts: Facts, benchmark: str) -> str | None:
    """The longest prompt plus the largest budget (under s1's rule, every Wait round of the largest
    Wait setting) against max_model_len, once the tokenizer and the benchmark's problems are on
    disk (the generate stage checks the same with the same code)."""
    table = _benchmark_table(config, benchmark)
    if facts.folder is None or table is None or table.empty:
        return None
    from transformers import AutoTokenizer

    from pipeline.generation import templates
    from pipeline.generation.requests import requests_for
    from pipeline.generation import budget_forcing as bf

    spec, generation = config["models"][model], config["generation"]
    try:
        template = templates.get(spec["template"], spec.get("delimiters"))
        bound = templates.bind(template, AutoTokenizer.from_pretrained(facts.folder), facts.folder,
                               generation["wait"]["string"])
    except templates.TemplateError as error:
        return f"models.{model}.template: {error}"
    except Exception:  # noqa: BLE001 - an unreadable tokenizer is the base_model job's to report
        return None
    requests = [r for seed in generation["seeds"] for r in requests_for(table, bound, seed, 1)]
    try:
        bf.check_lengths(requests, bound, slices.budgets(config), generation["answer_max_tokens"],
                         min(generation["vllm"]["max_model_len"], facts.context or 1 << 62),
                         max(generation["wait"]["times"]), generation["wait_rule"])
    except bf.LengthError as error:
        what, _, fix = str(error).rpartition("; ")
        return f"generation.vllm.max_model_len: model {model}, benchmark {benchmark}: {what or fix}. Fix: {fix}"
    except templates.TemplateError as error:  # delimiters s1's rule cannot stop on
        what, _, fix = str(error).rpartition("; ")
        return f"generation.wait_rule: model {model}: {what}. Fix: {fix}"
    return None


def _benchmark_table(config: dict, name: str):
    """The normalised problems of a benchmark when they can be read locally, else None."""
    from pipeline.data import benchmarks

    built = Path(f"results/data/{name}.parquet")
    if built.exists():
        from pipeline.core.artifacts import read_table

        return read_table(built)
    definition = benchmarks.resolve_definition(name, config["benchmarks"][name])
    if "file" in definition and Path(definition["file"]).expanduser().is_file():
        try:
            return benchmarks.load(name, definition)
        except Exception:  # noqa: BLE001 - benchmark_problem reports it
            return None
    return None


def benchmark_problem(config: dict, name: str) -> str | None:
    from pipeline.data import benchmarks

    definition = benchmarks.resolve_definition(name, config["benchmarks"][name])
    key = f"benchmarks.{name}"
    if "file" not in definition:
        return benchmarks.preflight(definition, name)
    problem = file_problem(f"{key}.file", definition["file"],
                           f"fix the path, or remove {key}.file to load {name} from the Hub"
                           if name in benchmark_defs.BUILTIN else "fix the path")
    if problem:
        return problem
    try:  # a local file is small: load it as the job will, columns, choices and all
        benchmarks.load(name, definition)
    except benchmarks.BenchmarkError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - a malformed file fails in many ways
        return (f"{key}.file: {cfg.shown(definition['file'])} cannot be parsed ({type(error).__name__}: "
                f"{str(error)[:200]}). Fix: give a JSONL (one JSON object a line), CSV or Parquet file")
    return None


# --------------------------------------------------------------------------- all checks


def problems(config: dict, jobs: list[tuple[str, dict]], local: bool = True, gpu_limit: int | None = None) -> list[str]:
    """Every problem of the scheduled `jobs` (rule, wildcards), one line each, sorted by key.
    `local`: jobs run on this machine, whose GPUs (at most `gpu_limit`, the user's --resources
    gpu=K) must hold what each job asks for."""
    found: dict[str, str] = {}

    def add(key: str, message: str | None) -> None:
        if message and key not in found:
            found[key] = message

    rules = {rule for rule, _ in jobs}
    unreachable = set()
    for rule, wildcards in jobs:
        if rule == "base_model":
            name = wildcards["model"]
            model = config["models"][name]
            key = f"models.{name}"
            if "hub" in model:
                message = hub.problem(model["hub"], model.get("revision"), "model", f"{key}.hub",
                                      f"replace hub by path: a local checkpoint folder ({key}.path)")
                if message:
                    unreachable.add(name)
                add(key, message)
        elif rule == "convert_gguf":
            from pipeline.models import gguf

            key = f"models.{wildcards['model']}.gguf"
            for line in gguf.problems(config["models"][wildcards["model"]]["gguf"], key):
                add(key, line)
        elif rule == "benchmark_data":
            add(f"benchmarks.{wildcards['benchmark']}", benchmark_problem(config, wildcards["benchmark"]))
        elif rule == "calibration":
            name = wildcards["calibration"]
            spec = config["calibration"][name]
            key = f"calibration.{name}"
            if spec["source"] == "demo_task":
                pass  # generated on the spot
            elif spec["source"] == "file":
                add(key, file_problem(f"{key}.path", spec["path"], "give a local text file, or use source c4 or pg19",
                                      text=True))
            elif key not in found:
                add(key, hub.problem(CALIBRATION_REPOS[spec["source"]], None, "dataset", f"{key}.source",
                                     f"set {key}.source: file and {key}.path to a local text file"))
        elif rule == "perplexity" and "perplexity.text" not in found:
            text = config["perplexity"]["text"]
            if text == "demo_task":
                pass  # drawn from the task: nothing to read
            elif text == "wikitext2":
                add("perplexity.text", hub.problem(CALIBRATION_REPOS["wikitext2"], None, "dataset", "perplexity.text",
                                                   "set perplexity.text to a local text file, or perplexity.enabled: false"))
            else:
                add("perplexity.text", file_problem("perplexity.text", text,
                                                    "give a local text file, wikitext2, or set perplexity.enabled: false",
                                                    text=True) or short_text_problem(text, config["perplexity"]["length"]))
        elif rule in ("allocation", "masks") and "variant" in wildcards:
            key = f"variants.{wildcards['variant']}@{wildcards['model']}"
            add(key + ":allocation", allocation_problem(config, wildcards["model"], wildcards["variant"]))
        if rule == "masks":
            scores = config["variants"][wildcards["variant"]].get("layerif", {}).get("scores")
            if scores:
                key = f"variants.{wildcards['variant']}.layerif.scores"
                add(key, file_problem(key, scores, "give a CSV or Parquet of block, group, score, or remove "
                                                   "scores to compute them"))
        if local:
            message = device_problem(config, rule, wildcards, gpu_limit)
            add(f"devices:{message}", message)
    from pipeline.grading import judge

    for line in judge.preflight_problems(config):
        add(f"grading.judge:{line}", line)
    models = sorted({w["model"] for _, w in jobs if "model" in w})
    for name in models:
        facts, problem = model_facts(config, name, reachable=name not in unreachable)
        add(f"models.{name}.path", problem)
        for line in context_problems(config, name, facts, jobs):
            add(line.split(":", 1)[0] + f"@{name}", line)
        variants = {w["variant"] for rule, w in jobs if rule == "masks" and w.get("model") == name}
        for line in layer_problems(config, name, facts, variants):
            add(line.split(":", 1)[0] + f"@{name}", line)
        if facts.data:  # what the architecture cannot give a variant (quantized experts, N:M widths)
            from pipeline.prune import support

            for variant in sorted(variants):
                for line in support.problems(facts.data, config["variants"][variant], f"variants.{variant}"):
                    add(f"variants.{variant}@{name}:{line}", line)
        if "generate" in rules and "generation.vllm.max_model_len@" + name not in found:
            for benchmark in sorted({w["benchmark"] for rule, w in jobs if rule == "generate" and w["model"] == name}):
                add(f"generation.vllm.max_model_len@{name}", prompt_problem(config, name, facts, benchmark))
    return [found[key] for key in sorted(found)]


def allocation_problem(config: dict, model: str, variant: str) -> str | None:
    """A variant's allocation outside [0, 1) for some block, when what it depends on is on disk
    already: AlphaPruning's alphas (else rule allocation checks it as soon as they exist), LayerIF's
    scores file or statistics (else the masks job checks it before pruning)."""
    from pipeline.core.artifacts import read_table
    from pipeline.prune import allocation

    prune = config["variants"][variant]
    if prune.get("allocation") == "alphapruning":
        alphas = Path(slices.stats_path(model, "alphas", None))
        return allocation.alphapruning_problem(read_table(alphas), variant, prune) if alphas.is_file() else None
    if prune.get("allocation") != "layerif":
        return None
    scores = prune.get("layerif", {}).get("scores")
    try:
        if scores:
            influence = allocation.read_layerif_scores(scores)
        else:
            from pipeline.prune import stats

            path = Path(slices.stats_path(model, "layerif", slices.variant_calibration(config, variant)))
            if not path.is_file():
                return None
            influence = stats.parse("layerif", read_table(path))
    except (OSError, ValueError):
        return None  # an unreadable scores file is named by its own check
    return allocation.layerif_problem(influence, variant, prune)


def device_problem(config: dict, rule: str, wildcards: dict, gpu_limit: int | None = None) -> str | None:
    """A job asking for more GPUs than this machine (or --resources gpu=K) gives, named by its key."""
    if "model" not in wildcards or rule not in ("generate", "perplexity", "masks", "stats_activations"):
        return None
    model = wildcards["model"]
    vllm_rule = rule in ("generate", "perplexity")
    tensor_parallel = config["generation"]["vllm"]["tensor_parallel_size"]
    if gpus.cpu_model(config, model):
        if vllm_rule and tensor_parallel > 1:
            what = "a demo model" if "demo" in config["models"][model] else f"models.{model}.device: cpu"
            return (f"generation.vllm.tensor_parallel_size: {tensor_parallel} splits model {model} over "
                    f"{tensor_parallel} GPUs, but {what} runs on the CPU, in one vLLM worker. Fix: set "
                    f"generation.vllm.tensor_parallel_size: 1 (or {gpus.FAKE_ENV}=N to rehearse a node with N GPUs)")
        return None
    need = gpus.job_devices(config, rule, model)
    have = len(machine_devices())
    limit = have if gpu_limit is None else min(have, gpu_limit)
    if need <= limit:
        return None
    where = f"{have} visible here ({gpus.describe()})" + (f", {gpu_limit} allowed by --resources gpu" if
                                                          gpu_limit is not None and gpu_limit < have else "")
    if have == 0:
        return (f"models.{model}.device: the {rule} jobs of model {model} need a GPU "
                f"and none is visible here. Fix: set models.{model}.device: cpu to run every job of it on the CPU, "
                "run on a GPU machine, or submit with --workflow-profile profiles/slurm"
                + (" (pruning alone: pruning.device: cpu)" if not vllm_rule else ""))
    key = "generation.vllm.tensor_parallel_size" if vllm_rule else "pruning.device"
    return (f"{key}: each {rule} job of model {model} needs {need} GPU(s), {where}. Fix: lower {key}"
            f"{'' if vllm_rule else ' (cpu)'}, raise --resources gpu, or run on a node with {need} GPUs")


