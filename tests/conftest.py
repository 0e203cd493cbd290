"""Shared fixtures: a tiny random model built offline once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
