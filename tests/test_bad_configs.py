"""A corpus of configs with one fault each. Every one is refused before any job: by the config
check (which the Snakefile runs while it is parsed, before Snakemake builds a job) or by the
preflight (which runs once the jobs are known and before the first starts), with the config
key and the fix in one line. A few go through a real `snakemake -n` to show the wiring."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from pipeline import preflight
from pipeline.core import config as cfg
from tests.workflow_util import ROOT, copy_workflow, snakemake, write_config

_DELETE = object()


def demo() -> dict:
    return cfg.load_yaml(ROOT / "tests" / "configs" / "random_demo.yaml")


def edit(config: dict, path: str, value) -> dict:
    """Set (or with _DELETE remove) a dotted key; keys holding dots are written 'a|b'."""
    keys = [k.replace("|", ".") for k in path.split(".")]
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return config


def assert_refusal(message: str, key: str, words=()):
    assert key in message, f"{key!r} missing from: {message}"
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
    line = next(line for line in message.splitlines() if key in line)
    assert "Fix" in line or "fix" in line, f"no fix in: {line}"
    # words, not regexes or type names
    for jargon in ("^[", "does not match", "is not of type", "'integer'", "'number'", "Traceback"):
        assert jargon not in message, f"{jargon!r} in: {message}"


# (case id, dotted key to edit, value, the key the message must name, other words it must hold)
CONFIG_CASES = [
    ("sparsity-one", "variants.wanda-20.sparsity", 1.0, "variants.wanda-20.sparsity", ["between 0 and 1"]),
    ("sparsity-above-one", "variants.wanda-20.sparsity", 1.5, "variants.wanda-20.sparsity", ["both excluded"]),
    ("sparsity-zero", "variants.wanda-20.sparsity", 0, "variants.wanda-20.sparsity", ["out of range"]),
    ("sparsity-negative", "variants.magnitude-20.sparsity", -0.1, "variants.magnitude-20.sparsity", []),
    ("sparsity-text", "variants.wanda-20.sparsity", "high", "variants.wanda-20.sparsity", ["a number"]),
    ("method-typo", "variants.wanda-20.method", "wandda", "variants.wanda-20.method", ["did you mean 'wanda'"]),
    ("allocation-typo", "variants.wanda-20.allocation", "owll", "variants.wanda-20.allocation",
     ["uniform, owl, alphapruning, layerif"]),
    ("sparsity-missing", "variants.wanda-20.sparsity", _DELETE, "variants.wanda-20", ["needs sparsity or nm"]),
    ("variant-key-typo", "variants.wanda-20.spars", 0.2, "variants.wanda-20", ["unknown key 'spars'", "sparsity"]),
    ("shortgpt-layers-missing", "variants.shortgpt-1.layers", _DELETE, "variants.shortgpt-1.layers", ["missing"]),
    ("shortgpt-layers-zero", "variants.shortgpt-1.layers", 0, "variants.shortgpt-1.layers", ["at least 1"]),
    ("shortgpt-layers-fraction", "variants.shortgpt-1.layers", 2.5, "variants.shortgpt-1.layers", ["whole number"]),
    ("shortgpt-all-blocks", "variants.shortgpt-1.layers", 4, "variants.shortgpt-1.layers", ["at most 3"]),
    ("reverse-too-many", "variants.reverse-1.layers", 9, "variants.reverse-1.layers", ["4 blocks"]),
    ("dense-sparsity", "variants.dense.sparsity", 0.2, "variants.dense.sparsity", ["not used by method dense"]),
    ("magnitude-layers", "variants.magnitude-20.layers", 2, "variants.magnitude-20.layers", ["shortgpt and reverse"]),
    ("nm-reversed", "variants.wanda-2of4.nm", "4:2", "variants.wanda-2of4.nm", ["N must be below M", '"2:4"']),
    ("nm-equal", "variants.wanda-2of4.nm", "2:2", "variants.wanda-2of4.nm", ["N must be below M"]),
    ("nm-unquoted", "variants.wanda-2of4.nm", 124, "variants.wanda-2of4.nm", ["quote it", 'nm: "2:4"']),
    ("nm-dash", "variants.wanda-2of4.nm", "2-4", "variants.wanda-2of4.nm", ["two whole numbers N:M"]),
    ("nm-with-owl", "variants.wanda-2of4.allocation", "owl", "variants.wanda-2of4.allocation", ["uniform"]),
    ("nm-with-sparsity", "variants.wanda-2of4.sparsity", 0.3, "variants.wanda-2of4.sparsity", ["contradicts"]),
    ("owl-settings-without-owl", "variants.wanda-20.owl", {"lambda": 0.1}, "variants.wanda-20.owl",
     ["allocation: owl"]),
    ("owl-lambda-negative", "variants.wanda-50-owl.owl", {"lambda": -1}, "variants.wanda-50-owl.owl.lambda",
     ["at least 0"]),
    ("layerif-direction", "variants.wanda-50-layerif.layerif", {"direction": "up"},
     "variants.wanda-50-layerif.layerif.direction", ["paper_a, original"]),
    ("calibration-undefined", "variants.wanda-20.calibration", "wikitext", "variants.wanda-20.calibration",
     ["not defined", "c4, pg19"]),
    ("pruning-calibration-undefined", "pruning", {"calibration": "nope"}, "variants.wanda-20.calibration",
     ["pruning.calibration"]),
    ("variant-name-space", "variants.bad name", {"method": "dense"}, "variants", ["'bad name'", "letters, digits"]),
    ("budget-negative", "generation.budgets", [16, -32], "generation.budgets.1", ["at least 1"]),
    ("budget-repeated", "generation.budgets", [16, 16], "generation.budgets", ["twice"]),
    ("budget-fraction", "generation.budgets", [16.5], "generation.budgets.0", ["whole number"]),
    ("budgets-empty", "generation.budgets", [], "generation.budgets", ["empty"]),
    ("budgets-not-list", "generation.budgets", 16, "generation.budgets", ["a list"]),
    ("seeds-missing", "generation.seeds", _DELETE, "generation.seeds", ["missing"]),
    ("seed-negative", "generation.seeds", [-1], "generation.seeds.0", ["at least 0"]),
    ("samples-zero", "generation.samples", 0, "generation.samples", ["at least 1"]),
    ("answer-cap-too-long", "generation.answer_max_tokens", 2000, "generation.answer_max_tokens",
     ["max_model_len 1024", "at most 992"]),
    ("max-model-len-zero", "generation.vllm.max_model_len", 0, "generation.vllm.max_model_len", []),
    ("gpu-memory-fraction", "generation.vllm.gpu_memory_utilization", 1.5, "generation.vllm.gpu_memory_utilization", []),
    ("tensor-parallel-zero", "generation.vllm.tensor_parallel_size", 0, "generation.vllm.tensor_parallel_size", []),
    ("backend-unknown", "generation.backend", "sglang", "generation.backend", ["vllm, transformers"]),
    ("wait-empty", "generation.wait", {"times": 1, "string": "  "}, "generation.wait.string", ["Wait"]),
    ("wait-times-negative", "generation.wait", {"times": -1}, "generation.wait.times", ["at least 0", "[0, 1]"]),
    ("wait-times-negative-in-list", "generation.wait", {"times": [0, -1]}, "generation.wait.times.1", ["at least 0"]),
    ("wait-times-repeated", "generation.wait", {"times": [1, 0, 1]}, "generation.wait.times", ["twice"]),
    ("wait-times-empty", "generation.wait", {"times": []}, "generation.wait.times", ["empty", "list at least one"]),
    ("wait-times-fraction", "generation.wait", {"times": [0, 1.5]}, "generation.wait.times.1", ["whole number"]),
    ("wait-times-text", "generation.wait", {"times": "once"}, "generation.wait.times", ["the text 'once'", "[0, 1]"]),
    ("wait-times-list-of-text", "generation.wait", {"times": ["1"]}, "generation.wait.times.0", ["whole number"]),
    ("generation-key-typo", "generation.budget", [16], "generation", ["unknown key 'budget'", "did you mean"]),
    ("template-unknown", "models.tiny-qwen3.template", "llama2", "models.tiny-qwen3.template", ["s1, qwen3, generic"]),
    ("template-missing", "models.tiny-qwen3.template", _DELETE, "models.tiny-qwen3.template", ["missing"]),
    ("generic-without-delimiters", "models.tiny-qwen3.template", "generic", "models.tiny-qwen3.delimiters",
     ["think_start"]),
    ("hub-and-demo", "models.tiny-qwen3.hub", "Qwen/Qwen3-8B", "models.tiny-qwen3", ["exactly one of hub"]),
    ("no-source", "models.tiny-qwen3.demo", _DELETE, "models.tiny-qwen3", ["exactly one of hub"]),
    ("demo-head-size", "models.tiny-qwen3.demo", {"hidden": 64, "heads": 4, "kv_heads": 1}, "models.tiny-qwen3.demo",
     ["below 32"]),
    ("demo-heads-divide", "models.tiny-qwen3.demo", {"hidden": 96, "heads": 2, "kv_heads": 3},
     "models.tiny-qwen3.demo", ["divide"]),
    ("dtype-unknown", "models.tiny-qwen3.dtype", "fp8", "models.tiny-qwen3.dtype", ["bfloat16, float16, float32"]),
    ("temperature-negative", "models.tiny-qwen3.sampling", {"temperature": -1}, "models.tiny-qwen3.sampling.temperature",
     []),
    ("top-p-zero", "models.tiny-qwen3.sampling", {"top_p": 0}, "models.tiny-qwen3.sampling.top_p", ["above 0"]),
    ("size-negative", "models.tiny-qwen3.size_b", -7, "models.tiny-qwen3.size_b", ["above 0"]),
    ("models-empty", "models", {}, "models", ["at least one"]),
    ("benchmark-unknown", "benchmarks.mystery", {}, "benchmarks.mystery", ["not a built-in benchmark"]),
    ("benchmark-typo", "benchmarks.math50", {}, "benchmarks.math50", ["did you mean 'math500'"]),
    ("custom-benchmark-no-grader", "benchmarks.mine", {"file": "config/demo/math500.jsonl"}, "benchmarks.mine.grader",
     ["integer, number, math or choice"]),
    ("grader-unknown", "benchmarks.math500.grader", "exact", "benchmarks.math500.grader", ["integer, number, math"]),
    ("limit-zero", "benchmarks.math500.limit", 0, "benchmarks.math500.limit", ["at least 1"]),
    ("column-unknown", "benchmarks.math500.columns", {"question": "problem"}, "benchmarks.math500.columns",
     ["'question'", "id, problem, answer, choices, correct"]),
    ("calibration-source", "calibration.c4.source", "wiki", "calibration.c4.source", ["c4, pg19, wikitext2, file"]),
    ("calibration-path-missing", "calibration.c4.path", _DELETE, "calibration.c4.path", ["source file"]),
    ("calibration-path-unused", "calibration.c4", {"source": "c4", "path": "x.txt"}, "calibration.c4.path",
     ["only read with source file"]),
    ("calibration-samples-zero", "calibration.c4.samples", 0, "calibration.c4.samples", ["at least 1"]),
    ("calibration-length-text", "calibration.c4.length", "long", "calibration.c4.length", ["whole number"]),
    ("calibration-name", "calibration.c 4", {"source": "c4"}, "calibration", ["'c 4'"]),
    ("pruning-device", "pruning.device", "gpu", "pruning.device", ["auto, cpu, cuda"]),
    ("keep-checkpoints-text", "pruning.keep_checkpoints", "maybe", "pruning.keep_checkpoints", ["true or false"]),
    ("timeout-negative", "grading.timeout_s", -1, "grading.timeout_s", ["above 0"]),
    ("workers-negative", "grading.workers", -2, "grading.workers", ["at least 0"]),
    ("confidence-one", "tables.confidence", 1, "tables.confidence", ["between 0 and 1"]),
    ("bootstrap-zero", "tables.bootstrap", 0, "tables.bootstrap", ["at least 1"]),
    ("perplexity-window-zero", "perplexity.length", 0, "perplexity.length", ["at least 1"]),
    ("perplexity-enabled-text", "perplexity.enabled", "yes", "perplexity.enabled", ["true or false"]),
    ("preflight-text", "preflight", "no", "preflight", ["true or false"]),
    ("top-level-typo", "generaton", {}, "the top level", ["unknown key 'generaton'", "did you mean 'generation'"]),
]


@pytest.mark.parametrize("case,path,value,key,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_check_refuses(case, path, value, key, words):
    with pytest.raises(cfg.ConfigError) as error:
        cfg.prepare(edit(demo(), path, value))
    assert_refusal(str(error.value), key, words)


def test_corpus_is_large_and_varied():
    assert len(CONFIG_CASES) + len(PREFLIGHT_CASES) + len(WORKFLOW_CASES) >= 60
    assert len({c[0] for c in CONFIG_CASES}) == len(CONFIG_CASES)


# --------------------------------------------------------------------------- refused by the preflight


def fake_checkpoint(folder: Path, layers: int = 4, context: int = 4096) -> str:
    """A folder holding the config.json of a model: all the preflight reads of it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": layers, "max_position_embeddings": context}))
    return str(folder)


def as_path_model(config: dict, folder: str) -> dict:
    spec = config["models"]["tiny-qwen3"]
    del spec["demo"]
    spec["path"] = folder
    return config


def jobs_for(config: dict, *rules: str) -> list[tuple[str, dict]]:
    """Jobs of `rules` for every model, variant, benchmark and calibration set of `config`."""
    out = []
    for model in config["models"]:
        for rule in rules:
            if rule in ("base_model",):
                out.append((rule, {"model": model}))
            elif rule == "calibration":
                out += [(rule, {"model": model, "calibration": c}) for c in config["calibration"]]
            elif rule in ("masks", "perplexity"):
                out += [(rule, {"model": model, "variant": v}) for v in config["variants"]]
            elif rule == "generate":
                out += [(rule, {"model": model, "variant": "dense", "benchmark": b}) for b in config["benchmarks"]]
    if "benchmark_data" in rules:
        out += [("benchmark_data", {"benchmark": b}) for b in config["benchmarks"]]
    return out


def _missing(tmp):
    return str(tmp / "nope.txt")


def _folder(tmp):
    (tmp / "a-folder").mkdir(exist_ok=True)
    return str(tmp / "a-folder")


def _latin1(tmp):
    path = tmp / "latin1.txt"
    path.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    return str(path)


def _short_text(tmp):
    path = tmp / "short.txt"
    path.write_text("A short text. " * 20 + "\n" * 20)  # 300 bytes
    return str(path)


def _bad_jsonl(tmp):
    path = tmp / "bad.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": oops}\n')
    return str(path)


def _scores_for_three_blocks(tmp):
    path = tmp / "scores.csv"
    path.write_text("block,group,score\n" + "".join(f"{b},{g},0.{b}\n" for b in range(3) for g in ("attention", "mlp")))
    return str(path)


def _scores_without_group(tmp):
    path = tmp / "scores.csv"
    path.write_text("block,score\n0,0.1\n")
    return str(path)


# (case id, how to break the config given tmp_path, rules scheduled, key, words)
PREFLIGHT_CASES = [
    ("benchmark-file-missing", lambda c, t: edit(c, "benchmarks.math500.file", _missing(t)), ["benchmark_data"],
     "benchmarks.math500.file", ["does not exist"]),
    ("benchmark-file-folder", lambda c, t: edit(c, "benchmarks.math500.file", _folder(t)), ["benchmark_data"],
     "benchmarks.math500.file", ["a folder"]),
    ("benchmark-file-malformed", lambda c, t: edit(c, "benchmarks.math500.file", _bad_jsonl(t)), ["benchmark_data"],
     "benchmarks.math500.file", ["cannot be parsed"]),
    ("benchmark-column-absent", lambda c, t: edit(c, "benchmarks.math500.columns", {"problem": "question"}),
     ["benchmark_data"], "benchmarks.math500.columns.problem", ["no column 'question'"]),
    ("benchmark-choices-column-absent", lambda c, t: edit(c, "benchmarks.gpqa_diamond.columns", {"choices": "options"}),
     ["benchmark_data"], "benchmarks.gpqa_diamond.columns.choices", ["no column 'options'"]),
    ("calibration-file-missing", lambda c, t: edit(c, "calibration.c4.path", _missing(t)), ["calibration"],
     "calibration.c4.path", ["does not exist"]),
    ("calibration-file-not-utf8", lambda c, t: edit(c, "calibration.c4.path", _latin1(t)), ["calibration"],
     "calibration.c4.path", ["not UTF-8"]),
    ("perplexity-text-missing", lambda c, t: edit(c, "perplexity.text", _missing(t)), ["perplexity"],
     "perplexity.text", ["does not exist", "perplexity.enabled: false"]),
    ("perplexity-text-folder", lambda c, t: edit(c, "perplexity.text", _folder(t)), ["perplexity"],
     "perplexity.text", ["a folder"]),
    ("perplexity-text-shorter-than-a-window", lambda c, t: edit(edit(c, "perplexity.text", _short_text(t)),
                                                                 "perplexity.length", 512),
     ["perplexity"], "perplexity.text", ["300 bytes", "perplexity.length 512", "below 301"]),
    ("layerif-scores-missing", lambda c, t: edit(c, "variants.wanda-50-layerif.layerif", {"scores": _missing(t)}),
     ["masks"], "variants.wanda-50-layerif.layerif.scores", ["does not exist"]),
    ("layerif-scores-blocks", lambda c, t: edit(c, "variants.wanda-50-layerif.layerif",
                                                {"scores": _scores_for_three_blocks(t)}),
     ["masks"], "variants.wanda-50-layerif.layerif.scores", ["3 blocks", "has 4"]),
    ("layerif-scores-columns", lambda c, t: edit(c, "variants.wanda-50-layerif.layerif",
                                                 {"scores": _scores_without_group(t)}),
     ["masks"], "variants.wanda-50-layerif.layerif.scores", ["group"]),
    ("model-path-without-config", lambda c, t: as_path_model(c, _folder(t)), ["base_model"],
     "models.tiny-qwen3.path", ["config.json"]),
    ("model-config-not-json", lambda c, t: as_path_model(c, _not_json_checkpoint(t)), ["base_model"],
     "models.tiny-qwen3.path", ["not a model's config.json"]),
    ("calibration-longer-than-context", lambda c, t: edit(as_path_model(c, fake_checkpoint(t / "m")),
                                                          "calibration.c4.length", 8192),
     ["calibration"], "calibration.c4.length", ["context of 4096", "at most 4096"]),
    ("perplexity-window-longer-than-context", lambda c, t: edit(as_path_model(c, fake_checkpoint(t / "m", context=512)),
                                                                "perplexity.length", 1024),
     ["perplexity"], "perplexity.length", ["context of 512"]),
    ("max-model-len-above-context", lambda c, t: as_path_model(c, fake_checkpoint(t / "m", context=512)),
     ["generate"], "generation.vllm.max_model_len", ["context of 512", "vLLM refuses"]),
    ("shortgpt-deeper-than-local-model", lambda c, t: as_path_model(c, fake_checkpoint(t / "m", layers=1)),
     ["masks"], "variants.shortgpt-1.layers", ["1 blocks", "at most 0"]),
    ("owl-on-one-block", lambda c, t: as_path_model(c, fake_checkpoint(t / "m", layers=1)),
     ["masks"], "variants.wanda-50-owl.allocation", ["uniform"]),
]


def _not_json_checkpoint(tmp):
    (tmp / "m").mkdir(exist_ok=True)
    (tmp / "m" / "config.json").write_text("not json {")
    return str(tmp / "m")


@pytest.mark.parametrize("case,breaks,rules,key,words", PREFLIGHT_CASES, ids=[c[0] for c in PREFLIGHT_CASES])
def test_preflight_refuses(case, breaks, rules, key, words, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo's files are relative to the workflow's folder
    config = cfg.prepare(breaks(demo(), tmp_path))
    found = preflight.problems(config, jobs_for(config, *rules))
    assert_refusal("\n".join(found), key, words)


def test_preflight_finds_nothing_wrong_with_the_demo(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = cfg.load(ROOT / "tests" / "configs" / "random_demo.yaml")
    rules = ("base_model", "benchmark_data", "calibration", "masks", "perplexity", "generate")
    assert preflight.problems(config, jobs_for(config, *rules)) == []


def test_longest_prompt_is_checked_against_max_model_len(tiny_model, tmp_path, monkeypatch):
    """Prompt, largest budget and answer delimiter must fit max_model_len: known before any job
    once the tokenizer and the problems are on disk."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PRUNE_TTS_FAKE_GPUS", "1")
    config = demo()
    as_path_model(config, str(tiny_model))
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"id": "1", "problem": "solve " * 900, "answer": "2"}) + "\n")
    config["benchmarks"] = {"math500": {"file": str(long)}}
    config = cfg.prepare(config)
    found = preflight.problems(config, jobs_for(config, "generate"))
    assert_refusal("\n".join(found), "generation.vllm.max_model_len", ["longest prompt", "math500"])
    config["generation"]["vllm"]["max_model_len"] = 4096
    config["generation"]["answer_max_tokens"] = 16
    assert preflight.problems(config, jobs_for(config, "generate")) == []


# --------------------------------------------------------------------------- refused by `snakemake -n`


def _dry_run(tmp_path, config: dict | None, *args, env=None):
    workdir = copy_workflow(tmp_path / "wf")
    if config is not None:
        write_config(workdir / "bad.yaml", config)
        args = (*args, "--configfile", "bad.yaml")
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        result = snakemake(workdir, "-n", *args, check=False, timeout=600)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return workdir, result.returncode, result.stdout + result.stderr


def _no_missing_text(config):
    return edit(edit(config, "perplexity.text", "config/demo/nope.txt"), "variants.wanda-50-layerif.layerif",
                {"scores": "config/demo/nope.csv"})


WORKFLOW_CASES = [
    # (case id, break the demo, keys the dry run must name)
    ("nm-unquoted-and-sparsity-one", lambda c: edit(edit(c, "variants.wanda-2of4.nm", 124),
                                                    "variants.wanda-20.sparsity", 1.0),
     ["variants.wanda-2of4.nm", "variants.wanda-20.sparsity"]),
    ("missing-input-files", _no_missing_text, ["perplexity.text", "variants.wanda-50-layerif.layerif.scores"]),
    ("missing-benchmark-and-calibration", lambda c: edit(edit(c, "benchmarks.math500.file", "config/demo/no.jsonl"),
                                                         "calibration.c4.path", "config/demo/no.txt"),
     ["benchmarks.math500.file", "calibration.c4.path"]),
]


@pytest.mark.workflow
@pytest.mark.parametrize("case,breaks,keys", WORKFLOW_CASES, ids=[c[0] for c in WORKFLOW_CASES])
def test_dry_run_refuses(case, breaks, keys, tmp_path):
    workdir, code, output = _dry_run(tmp_path, breaks(demo()))
    assert code != 0, output[-3000:]
    for key in keys:
        assert_refusal(output, key)
    assert "MissingInputException" not in output and "Traceback" not in output
    block = output[output.index("prune-tts:"):]  # Snakemake's own header names the folder
    assert str(workdir) not in block and str(ROOT) not in block, "absolute paths of the workflow's files"
    assert not (workdir / "results").exists()


@pytest.mark.workflow
def test_yaml_errors_name_file_line_and_column(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    study = workdir / "config" / "config.yaml"
    study.write_text(study.read_text().replace("  dense: {method: dense}", "  dense: {method: dense"))
    result = snakemake(workdir, "-n", check=False, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"config/config\.yaml, line \d+, column \d+: not valid YAML", output), output[-2000:]
    assert "Traceback" not in output


@pytest.mark.workflow
def test_verbose_switch_shows_the_traceback(tmp_path):
    _, code, output = _dry_run(tmp_path, edit(demo(), "variants.wanda-20.sparsity", 1.0),
                               env={cfg.VERBOSE_ENV: "1"})
    assert code != 0 and "variants.wanda-20.sparsity" in output
    assert re.search(r'config\.py", line \d+, in prepare', output), "no stack frames"


def test_config_file_errors_are_named(tmp_path):
    with pytest.raises(cfg.ConfigError, match="nope.yaml does not exist"):
        cfg.load_yaml(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models:\n  a: {hub: x\nvariants: {}\n")
    with pytest.raises(cfg.ConfigError, match=r"broken.yaml, line 3, column \d+: not valid YAML"):
        cfg.load_yaml(broken)
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("variants:\n  a: {method: dense}\n  a: {method: dense}\n")
    with pytest.raises(cfg.ConfigError, match="line 3, column 3: duplicate key 'a'"):
        cfg.load_yaml(duplicate)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(cfg.ConfigError, match="not a mapping"):
        cfg.load_yaml(listed)


@pytest.mark.workflow
@pytest.mark.parametrize("case, text, words", [
    ("missing", None, ["given.yaml does not exist"]),
    ("broken", "models:\n  a: {hub: x\nvariants: {}\n", [r"given.yaml, line 3, column \d+: not valid YAML"]),
    ("duplicate", "variants:\n  a: {method: dense}\n  a: {method: dense}\n",
     ["given.yaml, line 3, column 3: duplicate key 'a'"]),
])
def test_configfile_read_by_snakemake_is_refused_by_name(case, text, words, tmp_path):
    """Snakemake reads --configfile before the Snakefile runs; install.sh's hook refuses it the
    project's way. The hook is installed here explicitly, as the .pth file does at start-up."""
    import subprocess
    import sys

    workdir = copy_workflow(tmp_path / "wf")
    if text is not None:
        (workdir / "given.yaml").write_text(text)
    start = ("import sys, runpy, pipeline.core.configfile_hook as hook; hook.install(); "
             "sys.argv = ['snakemake', *sys.argv[1:]]; runpy.run_module('snakemake', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", start, "-n", "--configfile", "given.yaml"], cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    for word in words:
        assert re.search(word, output), output[-2000:]
    assert "Traceback" not in output and "nothing was run" in output


def test_install_script_installs_the_configfile_hook():
    """The hook only acts if install.sh puts it in the environment at start-up."""
    script = (ROOT / "install.sh").read_text()
    line = next(line for line in script.splitlines() if "configfile_hook" in line and line.startswith("echo"))
    assert ".pth" in line and "hook.install()" in line
    from pipeline.core import configfile_hook  # what the .pth line imports exists and installs a finder
    assert callable(configfile_hook.install)


def test_config_command_checks_files_without_snakemake(tmp_path):
    """`python -m pipeline.core.config FILE` gives the refusals for files Snakemake reads itself."""
    import subprocess
    import sys

    run = lambda *files: subprocess.run([sys.executable, "-m", "pipeline.core.config", *files], cwd=ROOT,  # noqa: E731
                                        capture_output=True, text=True, timeout=120)
    ok = run("config/demo.yaml")
    assert ok.returncode == 0 and "valid" in ok.stdout
    missing = run(str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    write_config(bad, edit(demo(), "variants.wanda-2of4.nm", "4:2"))
    refused = run(str(bad))
    assert refused.returncode == 1 and "variants.wanda-2of4.nm" in refused.stderr


def test_refusal_is_one_short_block_without_workflow_paths():
    config = edit(edit(demo(), "variants.wanda-20.sparsity", 1.0), "generation.budgets", [])
    with pytest.raises(cfg.ConfigError) as error:
        cfg.prepare(config)
    block = cfg.refusal(error.value)
    lines = block.splitlines()
    assert lines[0].startswith("prune-tts: the configuration cannot be used (2 problems")
    assert sum(line.startswith("  - ") for line in lines) == 2
    assert str(ROOT) not in block and cfg.VERBOSE_ENV in block


def test_copy_of_config_is_not_changed_by_the_check():
    config = demo()
    before = copy.deepcopy(config)
    cfg.prepare(config)
    assert config == before


def test_wait_refused_for_a_model_that_does_not_think():
    config = edit(demo(), "generation.wait.times", [0, 1])
    config["models"] = {name: {**model, "template": "direct"} for name, model in config["models"].items()}
    with pytest.raises(cfg.ConfigError) as error:
        cfg.prepare(config)
    assert_refusal(str(error.value), "generation.wait.times", ["template direct", "without thinking"])
    cfg.prepare(edit(config, "generation.wait.times", 0))  # without Wait the same config stands
