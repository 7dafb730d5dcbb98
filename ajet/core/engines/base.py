"""The one interface every token-level inference engine implements.

An engine takes prompt token ids and sampling parameters and returns completion ids with the log-prob of each
sampled token. The gateway renders chat templates and parses tool calls around it, so an engine never sees
messages. In-process transformers is the first implementation; a remote vLLM/SGLang server engine implements
the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ajet.core.constraints import Constraint
from ajet.core.types import Completion, SamplingParams


class EngineRequestError(ValueError):
    """The engine cannot serve this request as asked (the gateway answers 400 with the message)."""


class EngineUnavailableError(RuntimeError):
    """The engine cannot serve any request: its server is unreachable or died (the message says where its log
    is). The trainer stops on it instead of training on a step of failed episodes."""


class InferenceEngine(ABC):
    """Async token-in, token-out generation.

    Contract:
    - `generate` may be awaited from many coroutines (and event loops) at once; the engine batches them.
    - `Completion.logprobs` has one entry per `Completion.ids` entry: `logprobs[i]` is
      `log_softmax(logits_i / T)[ids[i]]`, where `logits_i` are the model's raw logits after the prompt and
      `ids[:i]`, and `T` is `sampling.temperature` (0, greedy, counts as 1). That is the distribution the
      token was sampled from *before* top-p truncation and *before* a constraint's grammar mask: a trainer has
      the model and the token ids, and recomputes exactly this with one teacher-forced forward pass, so the
      importance ratio is 1 before an update. Top-p and the grammar only choose which tokens may be drawn;
      they are not part of the recorded distribution.
    - With a `constraint` (engines whose `supports_constraints` is True), the token is sampled from the
      distribution restricted to the tokens the grammar allows next (renormalized; top-p then applies to
      that), and the completion ends with an end-of-sequence token once the grammar is complete (or is cut
      at `max_tokens` / a stop string, like any completion). Its log-probs still follow the rule above (the
      unmasked distribution). An engine that returns another engine's numbers must convert them: vLLM's
      default `logprobs_mode="raw_logprobs"` is `log_softmax(logits)` at temperature 1, and under structured
      outputs vLLM applies the grammar bitmask to the logits *before* that, so its returned log-probs of a
      constrained request are of the masked distribution, not of this one.
    - An invalid constraint raises `ajet.core.constraints.ConstraintError` (the gateway answers 400).
    - `version` is the policy version being served: `load_weights(w, version)` sets it (without one it
      increases by one); completions carry the version they came from.
    - Cancelling the task that awaits `generate` (the gateway does when the client disconnects or times out)
      stops the generation: the request leaves the batch at the next decode step and frees its slot (a
      remote engine aborts it on its server). Nothing is returned or recorded for it.
    """

    #: the engine can decode under a `Constraint`; the gateway passes none to an engine that cannot
    supports_constraints: ClassVar[bool] = False

    #: a Hugging Face tokenizer (has `apply_chat_template`, `decode`, `eos_token_id`)
    tokenizer: Any
    #: the name `/v1/models` reports
    model_name: str

    @property
    @abstractmethod
    def version(self) -> int: ...

    @abstractmethod
    async def generate(
        self, prompt_ids: list[int], sampling: SamplingParams, constraint: Constraint | None = None
    ) -> Completion:
        """Complete `prompt_ids`; `constraint` is only ever given to an engine with `supports_constraints`."""

    @abstractmethod
    async def load_weights(self, weights: Any, version: int | None = None) -> None:
        """Serve new weights from now on, as `version` (default: the current version + 1): a state dict, or the
        trainer's own module for in-process engines. Weight syncs (`ajet.trainer.weight_sync`) call this."""

    async def serve_as_version(self, version: int) -> None:
        """From now on, label the weights being served as policy `version`, without changing them: an engine
        that loaded a checkpoint trained for `version` steps (`ajet eval`) records its calls as that version."""
        module = self.shared_module()
        if module is None:
            raise NotImplementedError(f"{type(self).__name__} cannot relabel its policy version")
        await self.load_weights(module, version)  # its own module: nothing is copied

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release threads, sockets or GPU memory."""

    def check_health(self) -> None:  # noqa: B027 - optional hook: an in-process engine is always there
        """Raise `EngineUnavailableError` if the engine can no longer serve (e.g. its server process died)."""

    def shared_module(self) -> Any:
        """The `torch.nn.Module` this engine generates with, when the trainer may train that very module in
        place (in-process engines); None when the trainer must load its own policy and push weights to it."""
        return None

    def default_weight_sync(self, lora: bool) -> str:
        """The weight-sync method (`ajet.trainer.weight_sync`) that `engine.weight_sync: auto` picks."""
        return "shared_module"
