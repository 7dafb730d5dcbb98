"""`shared_module`: the in-process transformers engine generates with the trainer's own module, so a push
copies nothing; it only waits for the running rows to finish and bumps the served version."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError, describe_metrics

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
        await self.engine.load_weights(policy, version)
        return describe_metrics(started, time.perf_counter(), 0)
