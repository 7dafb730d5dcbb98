"""`shared_module`: the in-process transformers engine generates with the trainer's own module, so a push
copies nothing; it only waits for the running rows to finish and bumps the served version.

With FSDP the trainer's policy is sharded over the ranks and the engine keeps its own full module: the push
then copies the gathered full weights (LoRA deltas added, Hugging Face names) into it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError, describe_metrics, named_tensors_bytes
from ajet.trainer.weight_sync.tensors import policy_state_dict

if TYPE_CHECKING:
    import torch


class SharedModuleSync(WeightSync):
    name = "shared_module"

    def __init__(self, engine: Any, config: Any) -> None:
        if engine.shared_module() is None:
            raise WeightSyncError(
                f"engine.weight_sync: shared_module needs an in-process engine; {type(engine).__name__} runs "
                f"elsewhere (write engine.weight_sync: auto, or {engine.default_weight_sync(False)!r})"
            )
        self.engine = engine

    async def push(self, policy: torch.nn.Module, version: int) -> dict[str, float]:
        started = time.perf_counter()
        own = self.engine.shared_module()
        if any(module is own for module in policy.modules()):
            await self.engine.load_weights(policy, version)  # the engine's own module, trained in place
            return describe_metrics(started, time.perf_counter(), 0)
        tensors = policy_state_dict(policy)
        await self.engine.load_weights(tensors, version)
        return describe_metrics(started, time.perf_counter(), named_tensors_bytes(tensors))
