"""Test-time scaling generation: budget forcing (backend-independent) over vLLM or transformers.

- templates: thinking templates (s1, qwen3, generic), their delimiters and prompts as token ids.
- requests: the requests of a benchmark table (prompt, gold answer, choice order per sample).
- budget_forcing: the plan (thinking once at the largest budget, cuts, Wait rounds, answers).
- vllm_backend, hf_backend: engines that run one batch of token-id requests.
- demo_transcripts: the demo task's worked problems as templated, labelled token sequences.
"""

from __future__ import annotations


def model_dtype(spec: dict) -> str:
    """The dtype to run in: generation.vllm.dtype unless auto, else the model's dtype."""
    override = spec["generation"].get("vllm", {}).get("dtype", "auto")
    return spec["dtype"] if override == "auto" else override


def check_backend(spec: dict) -> None:
    """Fail fast, before loading anything, when the configured backend cannot run here."""
    if spec["generation"].get("backend", "vllm") == "vllm":
        from pipeline.generation.vllm_backend import check_platform

        check_platform()


def open_backend(spec: dict, model_dir):
    """Start the backend that generation.backend names, with the model's sampling settings.
    generation.vllm.max_model_len bounds the context of either backend."""
    generation = spec["generation"]
    if generation.get("backend", "vllm") == "transformers":
        from pipeline.generation.hf_backend import HfBackend

        return HfBackend(model_dir, model_dtype(spec), spec["sampling"], generation["vllm"]["max_model_len"])
    from pipeline.generation.vllm_backend import VllmBackend, start_engine

    return VllmBackend(start_engine(model_dir, model_dtype(spec), generation["vllm"]), spec["sampling"])
