"""`vllm_lora`: a LoRA policy's adapter to a vLLM server, loaded under a new name at every version.

A push saves the adapter (peft's `save_pretrained`: a few MB instead of the whole model), loads it on the
server as `<served model>-<run tag>-v<version>` (`POST /v1/load_lora_adapter`, which needs
VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 and a server started with --enable-lora; ajet's launcher does both), routes
every later request to that name, then unloads the previous version's adapter. Running requests finish on
the old adapter first (`VLLMEngine.updating`). Version 0 is the base model itself (a fresh adapter is zero).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError, describe_metrics
from ajet.trainer.weight_sync.vllm_reload import refused_push, weights_root

if TYPE_CHECKING:
    import torch


class VllmLoraSync(WeightSync):
    name = "vllm_lora"

    def __init__(self, engine: Any, config: Any) -> None:
        if not hasattr(engine, "updating"):
            raise WeightSyncError(
                f"engine.weight_sync: vllm_lora needs engine.kind vllm, not {config.engine.kind!r}"
            )
        if not config.train.lora.enabled:
            raise WeightSyncError(
                "engine.weight_sync: vllm_lora pushes LoRA adapters; set train.lora.enabled: true, or use "
                "vllm_reload for full fine-tuning"
            )
        self.engine = engine
        root = weights_root(config.engine.options.get("weights_dir"))
        root.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="ajet-lora-", dir=root))
        self._loaded: tuple[str, Path] | None = None
        self._run_tag = secrets.token_hex(3)

    async def push(self, policy: torch.nn.Module, version: int) -> dict[str, float]:
        if not hasattr(policy, "save_pretrained") or not hasattr(policy, "peft_config"):
            raise WeightSyncError("vllm_lora needs a peft LoRA policy (train.lora.enabled: true)")
        started = time.perf_counter()
        # A run-unique name: a server at a base_url may still hold an adapter of an earlier run's version.
        name = f"{self.engine.served_model}-{self._run_tag}-v{version}"
        target = self.directory / name
        nbytes = await asyncio.to_thread(self._write, policy, target)
        written = time.perf_counter()
        with refused_push(
            target,
            f"load the LoRA adapter of version {version}",
            "It needs --enable-lora with --max-lora-rank >= train.lora.r, and VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 "
            "(ajet's engine.launch sets all three)",
        ):
            async with self.engine.updating(version, route=name):
                await self.engine.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(target)})
        previous, self._loaded = self._loaded, (name, target)
        if previous is not None and previous[0] != name:
            await self._unload(*previous)
        return describe_metrics(started, time.perf_counter(), nbytes, write_s=written - started)

    def _write(self, policy: Any, target: Path) -> int:
        shutil.rmtree(target, ignore_errors=True)
        policy.save_pretrained(str(target))
        return sum(f.stat().st_size for f in target.iterdir() if f.is_file())

    async def _unload(self, name: str, path: Path) -> None:
        try:
            await self.engine.post("/v1/unload_lora_adapter", {"lora_name": name})
        except Exception:  # a leftover adapter costs server memory, not correctness: requests use the new one
            pass
        shutil.rmtree(path, ignore_errors=True)

    async def aclose(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
