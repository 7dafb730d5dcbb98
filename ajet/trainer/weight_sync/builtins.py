"""The built-in weight syncs, registered through the same hook a plugin uses (entry point `weight_sync`)."""

from __future__ import annotations

from typing import Any

from ajet.core.hookspecs import hookimpl


def _shared_module(engine: Any, config: Any) -> Any:
    from ajet.trainer.weight_sync.shared_module import SharedModuleSync

    return SharedModuleSync(engine, config)


def _vllm_reload(engine: Any, config: Any) -> Any:
    from ajet.trainer.weight_sync.vllm_reload import VllmReloadSync

    return VllmReloadSync(engine, config)


def _vllm_lora(engine: Any, config: Any) -> Any:
    from ajet.trainer.weight_sync.vllm_lora import VllmLoraSync

    return VllmLoraSync(engine, config)


def _vllm_nccl(engine: Any, config: Any) -> Any:
    from ajet.trainer.weight_sync.vllm_nccl import VllmNcclSync

    return VllmNcclSync(engine, config)


@hookimpl
def register_weight_syncs(register: Any) -> None:
    register("shared_module", _shared_module)
    register("vllm_reload", _vllm_reload)
    register("vllm_lora", _vllm_lora)
    register("vllm_nccl", _vllm_nccl)
