"""The one interface every token-level inference engine implements.

An engine takes prompt token ids and sampling parameters and returns completion ids with the log-prob of each
sampled token. The gateway renders chat templates and parses tool calls around it, so an engine never sees
messages. In-process transformers is the first implementation; a remote vLLM/SGLang server engine implements
the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ajet.core.types import Completion, SamplingParams


class InferenceEngine(ABC):
    """Async token-in, token-out generation.

    Contract:
    - `generate` may be awaited from many coroutines (and event loops) at once; the engine batches them.
    - `Completion.logprobs` has one entry per `Completion.ids` entry, from the distribution actually sampled
      (logits / temperature, before top-p), so a trainer can recompute them with one forward pass.
    - `version` increases by one each time `load_weights` succeeds; completions carry the version they came from.
    - Cancelling the task that awaits `generate` (the gateway does when the client disconnects or times out)
      stops the generation: the request leaves the batch at the next decode step and frees its slot (a
      remote engine aborts it on its server). Nothing is returned or recorded for it.
    """

    #: a Hugging Face tokenizer (has `apply_chat_template`, `decode`, `eos_token_id`)
    tokenizer: Any
    #: the name `/v1/models` reports
    model_name: str

    @property
    @abstractmethod
    def version(self) -> int: ...

    @abstractmethod
    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion: ...

    @abstractmethod
    async def load_weights(self, weights: Any) -> None:
        """Serve new weights from now on (a state dict, or the trainer's own module for in-process engines)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release threads, sockets or GPU memory."""
