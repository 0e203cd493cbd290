"""transformers backend: the same plan through model.generate, for models or machines vLLM
does not serve, and as a cross-check of the vLLM path.

Requests run one at a time: transformers has one random generator per process, so a
per-request seed means seeding before each request. Slow for real models, exact per seed.
"""

from __future__ import annotations

import importlib.metadata

from pipeline.generation.budget_forcing import Gen, Out


class HfBackend:
    name = "transformers"

    def __init__(self, model_dir, dtype: str, sampling: dict, max_model_len: int, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pipeline.models.models import torch_dtype

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype)).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.sampling = sampling
        self.version = f"transformers {importlib.metadata.version('transformers')}"
        limit = getattr(self.model.config, "max_position_embeddings", None) or max_model_len
        self.max_model_len = min(max_model_len, limit)

    def _config(self, request: Gen):
        from transformers import GenerationConfig

        s = self.sampling
        sample = s["temperature"] > 0
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else request.stop_ids[0]
        # every knob explicit: the model's own generation_config (e.g. Qwen's top_k 20) must not leak in
        return GenerationConfig(
            max_new_tokens=request.max_tokens, min_new_tokens=request.min_tokens or None, do_sample=sample,
            temperature=s["temperature"] if sample else None, top_p=s["top_p"] if sample else None,
            top_k=(s["top_k"] if s["top_k"] > 0 else 0) if sample else None,
            min_p=(s["min_p"] or None) if sample else None, repetition_penalty=1.0,
            eos_token_id=list(request.stop_ids), pad_token_id=pad,
            stop_strings=list(request.stop_strings) or None,
        )

    def generate(self, requests: list[Gen]) -> list[Out]:
        import torch

        outs = []
        for request in requests:
            torch.manual_seed(request.seed)
            prompt = torch.tensor([list(request.prompt_ids)], device=self.device)
            with torch.no_grad():
                result = self.model.generate(
                    prompt, attention_mask=torch.ones_like(prompt), generation_config=self._config(request),
                    tokenizer=self.tokenizer if request.stop_strings else None,
                )
            ids = result[0, prompt.shape[1]:].tolist()
            stopped = bool(ids) and ids[-1] in request.stop_ids
            if not stopped and request.stop_strings:
                text = self.tokenizer.decode(ids, skip_special_tokens=False)
                stopped = any(stop in text for stop in request.stop_strings)
            outs.append(Out(ids=ids, stopped=stopped))
        return outs
