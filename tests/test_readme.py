"""The README is true: its commands run as written (or dry-run, where they need a GPU, the Hub
or hours), the grid it describes is config/config.yaml's, and its examples are valid additions."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import preflight
from pipeline.core import config as cfg
from pipeline.core import config_schema, slices, specs
from tests.workflow_util import ROOT, copy_workflow

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
# refusals that only say this machine lacks what the study needs (a GPU, the Hub)
ENVIRONMENTAL = ("Hugging Face", "need a GPU")


def bash_commands() -> list[str]:
    """Every command of the README's bash blocks, comments dropped, `&&` chains split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


def yaml_examples() -> list[tuple[str, str]]:
    """(section, line) of every YAML example, the section read from 'under `X:`' before it."""
    out = []
    for match in re.finditer(r"```yaml\n(.*?)```", README, re.S):
        before = README[: match.start()]
        section = re.findall(r"under `(\w+):`", before)[-1]
        out.append((section, match.group(1).rstrip("\n")))
    return out


def test_readme_has_the_commands_a_newcomer_needs():
    commands = bash_commands()
    assert any(c.startswith("bash install.sh") for c in commands)
    assert ".venv/bin/snakemake --cores 2 all --configfile config/demo.yaml" in commands
    assert ".venv/bin/python -m pytest" in commands
    # the target before --configfile in every command that has both
    for command in commands:
        words = shlex.split(command)
        if "--configfile" in words:
            after = words[words.index("--configfile") + 2:]
            assert not any(w.startswith("results/") for w in after), command


def test_readme_describes_the_configured_grid():
    config = cfg.load(ROOT / "config" / "config.yaml")
    study = README.split("## Running the study", 1)[1].split("###", 1)[0]
    assert f"{len(config['variants'])} variants" in study
    assert {"two": 2}.get(re.search(r"(\w+) models", study).group(1)) == len(config["models"])
    for model in config["models"]:
        assert model.replace("qwen3", "Qwen3") in study
    budgets = [str(b) for b in slices.budgets(config)]
    assert ", ".join(budgets[:-1]) + f" and {budgets[-1]}" in study
    seeds = [str(s) for s in config["generation"]["seeds"]]
    assert ", ".join(seeds[:-1]) + f" and {seeds[-1]}" in study
    names = {"aime24": "AIME24", "amc23": "AMC23", "math500": "MATH500", "gpqa_diamond": "GPQA-Diamond"}
    assert {names[b] for b in config["benchmarks"]} <= set(re.findall(r"[A-Z][\w-]+", study))
    jobs = len(config["models"]) * len(config["variants"]) * len(config["benchmarks"])
    assert f"{jobs} generation jobs" in study
    methods = {v["method"] for v in config["variants"].values()}
    for method, word in (("shortgpt", "ShortGPT"), ("magnitude", "magnitude"), ("wanda", "Wanda"),
                         ("sparsegpt", "SparseGPT")):
        assert (method in methods) == (word in study), method


def test_readme_explains_every_config_section():
    table = README.split("## Configuration", 1)[1]
    for section in config_schema.schema()["properties"]:
        assert f"| `{section}" in table, section
    for key in ("limit", "grader", "columns", "answer_max_tokens", "max_model_len", "keep_checkpoints", "text"):
        assert f"`{key}`" in table, key
    for word in ("PRUNE_TTS_VERBOSE", ".venv-ref", "docs/GRADING.md", "no_answer", "timeout", "partial"):
        assert word in README, word


def _insert(text: str, section: str, line: str) -> str:
    """Add `line` right below `section:` in a config's text, as a user would."""
    head = f"\n{section}:\n"
    assert head in text, section
    return text.replace(head, head + line + "\n", 1)


def test_readme_examples_are_new_and_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    study_text = (ROOT / "config" / "config.yaml").read_text()
    study = cfg.load(ROOT / "config" / "config.yaml")
    examples = yaml_examples()
    assert {section for section, _ in examples} >= {"models", "variants", "benchmarks"}
    text = study_text
    for section, line in examples:
        name = next(iter(yaml.safe_load(line)))
        assert name not in study[section], f"{section}.{name} is already in config/config.yaml"
        text = _insert(text, section, line)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = cfg.load(path)  # duplicate keys, schema and every rule of the config check
    for section, line in examples:
        assert next(iter(yaml.safe_load(line))) in config[section]
    custom = [next(iter(yaml.safe_load(line))) for section, line in examples if section == "benchmarks"]
    for name in custom:  # the file is there and holds the mapped columns
        assert preflight.benchmark_problem(config, name) is None


# --------------------------------------------------------------------------- running the commands


def _env(extra: dict) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def _run(words: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _as_dry_run(words: list[str]) -> list[str]:
    """A snakemake command as a dry run: no report written, no job run."""
    if "--report" in words:
        i = words.index("--report")
        words = words[:i] + words[i + 2:]
    return words if "-n" in words else [*words, "-n"]


def _check_snakemake(result: subprocess.CompletedProcess, command: str, slurm: bool) -> None:
    output = result.stdout + result.stderr
    if result.returncode == 0:
        done = ("This was a dry-run", "Nothing to be done", "Unlocked working directory")  # the last: --unlock
        assert any(word in output for word in done), output[-2000:]
        return
    assert "prune-tts: cannot start" in output, f"{command}\n{output[-3000:]}"
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert problems and all(any(word in p for word in ENVIRONMENTAL) for p in problems), (command, problems)
    if slurm:
        assert not any("GPU" in p for p in problems), "jobs sent to Slurm get their GPU there"


@pytest.mark.workflow
def test_every_readme_command_runs_as_written(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    for name in ("install.sh", "benchmarks", ".ci"):
        source = ROOT / name
        (subprocess.run(["cp", "-r", str(source), str(workdir / name)], check=True))
    env = _env({})
    seen = set()
    for command in bash_commands():
        words = shlex.split(command)
        if words[0] == "export":
            env.update(dict(word.split("=", 1) for word in words[1:]))
            continue
        if words[:2] == ["bash", "install.sh"]:
            assert _run(["bash", "-n", "install.sh"], workdir, env).returncode == 0
            install = (workdir / "install.sh").read_text()
            assert all(flag in install for flag in words[2:]) and ".venv-ref" in install
            seen.add("install")
            continue
        if words[0] == "hf":  # interactive login: the command must exist
            assert _run([str(BIN / "hf"), *words[1:], "--help"], workdir, env).returncode == 0, command
            continue
        assert words[0].startswith(".venv/bin/"), command
        words[0] = str(BIN / words[0].removeprefix(".venv/bin/"))
        if words[0].endswith("snakemake"):
            result = _run(_as_dry_run(words), workdir, env)
            _check_snakemake(result, command, slurm="profiles/slurm" in command)
            seen.add("snakemake")
        elif words[1:3] == ["-m", "pytest"]:  # collecting is enough here: the suite runs these tests
            result = _run([*words, "--collect-only", "-q", str(ROOT / "tests" / "test_templates.py")], ROOT, env)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        elif words[1].startswith("benchmarks/"):  # speed measurements take minutes: their arguments parse
            result = _run([*words, "--help"], workdir, env)
            assert result.returncode == 0 and "usage" in result.stdout, result.stderr[-2000:]
        else:
            if "pipeline.core.provenance" in words:  # an artifact to read, as the demo writes it
                spec = {"benchmark": "math500", "definition": {"file": "config/demo/math500.jsonl", "grader": "math"}}
                made = _run([sys.executable, "-m", "pipeline.stages.benchmark_data", "--spec", specs.canonical_json(spec),
                             "--out", "results/data/math500.parquet"], workdir, env)
                assert made.returncode == 0, made.stderr[-2000:]
            result = _run(words, workdir, env)
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert seen == {"install", "snakemake"}
