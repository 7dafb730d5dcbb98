"""An inference engine that answers with scripted completion texts, teacher-forced through a real model.

The tiny random model never writes a tool call, so tests that need a given exchange (call a tool, then answer)
script the completions. Everything else is real: the text is tokenized with the model's own tokenizer (plus
its end-of-turn token, as a real engine returns it), and each token's log-prob comes from a forward pass of the
model over prompt + completion, under the sampling temperature, exactly what `TransformersEngine` would report
had it sampled those tokens. So the gateway, the recorder and the sample builder see what they would in a run.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from ajet.core.engines.base import InferenceEngine
from ajet.core.types import Completion, SamplingParams


class ScriptExhaustedError(RuntimeError):
    """The agent made more model calls than the script has completions."""


class ScriptedEngine(InferenceEngine):
    def __init__(self, model: Any, tokenizer: Any, script: Iterable[str], *, model_name: str = "ajet-policy"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context: int = int(model.config.max_position_embeddings)
        self.prompts: list[list[int]] = []  # every prompt served, in order
        self._script = deque(script)
        self._eos: int = tokenizer.eos_token_id
        self._lock = threading.Lock()  # one forward pass at a time: the model is shared

    @property
    def version(self) -> int:
        return 0

    @property
    def remaining(self) -> int:
        return len(self._script)

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        if not self._script:
            raise ScriptExhaustedError(
                f"call {len(self.prompts) + 1}: the script has no completion left (the agent made more calls "
                "than scripted)"
            )
        text = self._script.popleft()
        ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self._eos]
        finish = "stop"
        if len(ids) > sampling.max_tokens:  # as a real engine would: cut at max_tokens
            ids, finish = ids[: sampling.max_tokens], "length"
        logprobs = await asyncio.to_thread(self._score, list(prompt_ids), ids, sampling.temperature or 1.0)
        self.prompts.append(list(prompt_ids))
        return Completion(
            ids=ids,
            logprobs=logprobs,
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            finish_reason=finish,
            model_version=0,
        )

    def _score(self, prompt: list[int], completion: list[int], temperature: float) -> list[float]:
        """log p(completion[i] | prompt + completion[:i]) under logits / temperature."""
        with self._lock, torch.no_grad():
            tokens = torch.tensor([prompt + completion[:-1]], device=self.model.device)
            logits = self.model(input_ids=tokens).logits[0, len(prompt) - 1 :].float()
            logp = torch.log_softmax(logits / temperature, dim=-1)
            return logp.gather(1, torch.tensor(completion, device=logp.device)[:, None])[:, 0].tolist()

    async def load_weights(self, weights: Any) -> None:
        raise NotImplementedError("a scripted engine serves fixed completions; it is never trained")
