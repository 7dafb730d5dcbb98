"""An inference engine that answers with scripted completion texts, teacher-forced through a real model.

Why it exists: the tiny random model never writes a tool call, so tests that need a given exchange (call a
tool, then answer) script the model's choices. Everything else is real: the text is tokenized with the
model's own tokenizer (plus its end-of-turn token, as a real engine returns it), and each token's log-prob
comes from a forward pass of the model over prompt + completion, under the sampling temperature, exactly what
`TransformersEngine` would report had it sampled those tokens. So the gateway (chat template, Hermes tool-call
parser), the recorder, the sample builder, the framework and the workflow see what they would in a run.

A script is either
- a list of completion texts, served one per call in call order (`InOrder`), or
- a function `script(prompt_text, call_index) -> str | None` of the decoded prompt and the 0-based index of
  the call: for episodes that run concurrently (their calls interleave, so call order says nothing) or for a
  test that scripts only some calls. `None` lets the real model generate that completion.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from ajet import LabeledTask, Workflow
from ajet.core.config import parse_config
from ajet.core.engines.base import InferenceEngine
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Completion, Episode, LlmCall, SamplingParams

#: (decoded prompt, 0-based call index) -> the completion text, or None to let the real model generate
Script = Callable[[str, int], str | None]


def tool_call(name: str, arguments: dict[str, Any]) -> str:
    """A Hermes tool call, as the gateway's parser expects it from the model."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class ScriptExhaustedError(RuntimeError):
    """The agent made more model calls than the script has completions."""


class InOrder:
    """A script of fixed completions, one per call, in call order; running out is an error."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = deque(texts)

    @property
    def remaining(self) -> int:
        return len(self._texts)

    def __call__(self, prompt_text: str, call_index: int) -> str:
        if not self._texts:
            raise ScriptExhaustedError(
                f"call {call_index + 1}: the script has no completion left (the agent made more calls than "
                "scripted)"
            )
        return self._texts.popleft()


class ScriptedEngine(InferenceEngine):
    """Serves the script's completions with the model's own log-probs of them; where the script returns None,
    the model generates (through a `TransformersEngine`, started on first use)."""

    def __init__(
        self, model: Any, tokenizer: Any, script: Script | Iterable[str], *, model_name: str = "ajet-policy"
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.script: Script = script if callable(script) else InOrder(script)
        self.prompts: list[list[int]] = []  # every prompt served, in call order
        self._calls = 0
        self._generator: TransformersEngine | None = None  # for the calls the script leaves to the model
        self._lock = threading.Lock()  # one scoring pass at a time: the model is shared

    @property
    def version(self) -> int:
        return 0

    @property
    def remaining(self) -> int:
        """Completions left in an in-order script."""
        if not isinstance(self.script, InOrder):
            raise TypeError("only an in-order script (a list of completions) has a number of them left")
        return self.script.remaining

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        call_index, self._calls = self._calls, self._calls + 1
        text = self.script(self.tokenizer.decode(prompt_ids), call_index)
        self.prompts.append(list(prompt_ids))
        if text is None:
            if self._generator is None:
                self._generator = TransformersEngine(self.model, self.tokenizer, model_name=self.model_name)
            return await self._generator.generate(prompt_ids, sampling)
        ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        finish: Literal["stop", "length"] = "stop"
        if len(ids) > sampling.max_tokens:  # as a real engine would: cut at max_tokens
            ids, finish = ids[: sampling.max_tokens], "length"
        logprobs = await asyncio.to_thread(self._score, list(prompt_ids), ids, sampling.temperature or 1.0)
        return Completion(
            ids=ids,
            logprobs=logprobs,
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            finish_reason=finish,
            model_version=self.version,
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

    async def aclose(self) -> None:
        if self._generator is not None:
            await self._generator.aclose()


async def run_scripted(
    tiny: tuple[Any, Any],
    script: Script | Iterable[str],
    make_workflow: Callable[[], Workflow],
    task: LabeledTask,
) -> tuple[Episode, list[LlmCall]]:
    """One episode of the workflow (in-process gateway, memory store) on `tiny` (model, tokenizer) with the
    scripted completions; returns the stored episode with its recorded calls."""
    config = parse_config({"workflow": "unused:Unused", "gateway": {"http": False}, "store": "memory"})
    runtime = await build_runtime(config, store=MemoryStore(), engine=ScriptedEngine(*tiny, script))
    try:
        executor = RolloutExecutor(runtime, make_workflow)
        executor.settings.group_size = 1
        (episode,) = await executor.run([task])
        return runtime.store.get_episode(episode.episode_id), runtime.store.calls(episode.episode_id)
    finally:
        await runtime.close()
