"""`vllm_reload`: full weights to a vLLM server on the same machine, through files.

A push writes the policy as one safetensors file into a fresh directory (on /dev/shm when it exists, so the
bytes never touch a disk), then asks the server to reload every weight from it in place
(`POST /collective_rpc {"method": "reload_weights", "kwargs": {"weights_path": DIR}}`, which needs the server
started with VLLM_SERVER_DEV_MODE=1; ajet's launcher sets it). New requests wait and running ones finish
first (`VLLMEngine.updating`), so no completion mixes versions. The previous version's directory is deleted
once the new one is served. It works for CPU and GPU servers alike; on GPUs `vllm_nccl` skips the files.

A LoRA policy is pushed with its adapters added to the base weights, so a server without LoRA support can serve it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ajet.core.engines.base import EngineUnavailableError
from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError, describe_metrics, named_tensors_bytes
from ajet.trainer.weight_sync.tensors import policy_state_dict

if TYPE_CHECKING:
    import torch


def weights_root(configured: str | None) -> Path:
    """Where pushed weights are written: `engine.options.weights_dir`, else /dev/shm (RAM), else the temp dir."""
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


@contextlib.contextmanager
def refused_push(target: Path, what: str, needs: str) -> Iterator[None]:
    """A push the server refused: its files are removed, and the error says what the server needs. A server that
    is gone raises its own error (which names its log) unchanged."""
    try:
        yield
    except EngineUnavailableError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise WeightSyncError(f"the vLLM server could not {what}: {exc}. {needs}") from exc


def server_dtype(config: Any) -> Any:
    import torch

    name = config.model.autocast if config.model.autocast != "none" else config.model.dtype
    return getattr(torch, name)


class VllmReloadSync(WeightSync):
    name = "vllm_reload"

    def __init__(self, engine: Any, config: Any) -> None:
        if not hasattr(engine, "reload_weights"):
            raise WeightSyncError(
                f"engine.weight_sync: vllm_reload needs engine.kind vllm, not {config.engine.kind!r}"
            )
        self.engine = engine
        self.dtype = server_dtype(config)
        root = weights_root(config.engine.options.get("weights_dir"))
        root.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="ajet-weights-", dir=root))
        self._served: Path | None = None

    async def push(self, policy: torch.nn.Module, version: int) -> dict[str, float]:
        import asyncio

        started = time.perf_counter()
        target = self.directory / f"v{version}"
        nbytes = await asyncio.to_thread(self._write, policy, target)
        written = time.perf_counter()
        with refused_push(
            target,
            f"reload the weights of version {version}",
            "It needs VLLM_SERVER_DEV_MODE=1 (ajet's engine.launch sets it) and the same model architecture",
        ):
            await self.engine.load_weights(str(target), version)
        previous, self._served = self._served, target
        if previous is not None and previous != target:
            shutil.rmtree(previous, ignore_errors=True)
        return describe_metrics(started, time.perf_counter(), nbytes, write_s=written - started)

    def _write(self, policy: torch.nn.Module, target: Path) -> int:
        import torch
        from safetensors.torch import save_file

        with torch.no_grad():
            tensors = policy_state_dict(policy, self.dtype)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)  # the server never sees a half-written directory
        return named_tensors_bytes(tensors)

    async def aclose(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
