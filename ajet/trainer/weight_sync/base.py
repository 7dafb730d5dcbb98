"""`WeightSync`: move the trainer's policy into the inference engine that serves the rollouts.

The trainer owns the policy it trains; an inference engine only serves a version of it. After each update the
trainer calls `push(policy, version)`; when it returns, every request the engine admits is served by exactly
those weights, and the calls it records carry `version` (requests already running when the push began finish
on the old weights first: no completion mixes two versions).

Implementations register by name through the `register_weight_syncs` hook, built-ins exactly like a plugin's:

- `shared_module`: the in-process transformers engine serves the trainer's own module (no copy).
- `vllm_reload`: full weights written as safetensors (to /dev/shm when it exists) and reloaded in place by a
  vLLM server (`/collective_rpc reload_weights`); works on CPU and GPU servers on the same machine.
- `vllm_lora`: the LoRA adapter saved and loaded by the server under a new name; requests are routed to it.
- `vllm_nccl`: vLLM's weight-transfer API over NCCL (GPU trainer and GPU server).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from ajet.core.config import AjetConfig
    from ajet.core.engines.base import InferenceEngine

#: `factory(engine, config) -> WeightSync`, what `register_weight_syncs` registers under a name
WeightSyncFactory = Callable[["InferenceEngine", "AjetConfig"], "WeightSync"]


class WeightSyncError(RuntimeError):
    """A push failed; the engine still serves the previous version (the message says why and what to do)."""


class WeightSync(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def push(self, policy: torch.nn.Module, version: int) -> dict[str, float]:
        """Serve `policy` as `version` from now on. Returns metrics (`weight_sync/...`: seconds, bytes)."""

    async def start(self, policy: torch.nn.Module) -> None:  # noqa: B027 - optional hook
        """Called once before the first rollout, with the policy at its starting weights (e.g. to set up a
        process group). Version 0 is whatever the engine loaded from `model.path`, or the resumed weights
        pushed with `push` right after."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release files, adapters or process groups."""


def describe_metrics(started: float, finished: float, nbytes: int, **extra: float) -> dict[str, float]:
    out = {"weight_sync/time_s": finished - started, "weight_sync/bytes": float(nbytes)}
    out.update({f"weight_sync/{k}": float(v) for k, v in extra.items()})
    return out


def named_tensors_bytes(tensors: dict[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())
