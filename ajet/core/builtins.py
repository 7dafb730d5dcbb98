"""The built-in engines, rollout backends, judgers and tool-call parsers, registered through the same hooks a
third-party plugin uses (entry point `core` in the `ajet` group of this project's pyproject.toml)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ajet.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ajet.core.config import AjetConfig


def transformers_engine(config: AjetConfig) -> Any:
    """In-process transformers: trainable, batches concurrent requests."""
    from ajet.core.engines.transformers_engine import TransformersEngine

    return TransformersEngine.from_spec(
        config.model.path,
        dtype=config.model.dtype,
        autocast=config.model.autocast,
        device=config.model.device,
        model_name=config.model.served_name,
        max_batch_size=config.engine.max_batch_size,
        batch_wait_ms=config.engine.batch_wait_ms,
    )


def vllm_engine(config: AjetConfig) -> Any:
    """A vLLM server (started by ajet with `launch`, or yours at `base_url`): trainable, weights pushed to it."""
    from ajet.core.engines.vllm_engine import engine_from_config

    return engine_from_config(config)


def openai_endpoint(config: AjetConfig) -> Any:
    """Any OpenAI-compatible endpoint: for debugging a workflow against a hosted or local server model."""
    from ajet.core.gateway.backends import OpenAIChatBackend

    engine = config.engine
    api_key = engine.api_key or (os.environ.get(engine.api_key_env) if engine.api_key_env else None) or "none"
    return OpenAIChatBackend(base_url=engine.base_url or "", api_key=api_key, model=engine.remote_model or "")


@hookimpl
def register_engines(register: Any) -> None:
    register("transformers", transformers_engine)
    register("vllm", vllm_engine)
    register("openai", openai_endpoint)


def local_rollouts(config: AjetConfig, registry: Any) -> Any:
    """Episodes as asyncio tasks in this process (the default): the executor builds one per run of tasks."""
    return None


def ray_rollouts(config: AjetConfig, registry: Any) -> Any:
    """Episodes in Ray actors, on this machine or anywhere on a Ray cluster (`rollout.workers`)."""
    from ajet.core.rollout_backends.ray_workers import RayBackend

    return RayBackend(config)


def remote_rollouts(config: AjetConfig, registry: Any) -> Any:
    """Episodes claimed over HTTP by any client, anywhere (`ajet serve`, `ajet worker`, `ajet.remote`)."""
    from ajet.core.rollout_backends.remote import RemoteBackend

    return RemoteBackend(config)


@hookimpl
def register_rollout_backends(register: Any) -> None:
    register("local", local_rollouts)
    register("ray", ray_rollouts)
    register("remote", remote_rollouts)


@hookimpl
def register_judgers(register: Any) -> None:
    from ajet.core.judgers import BUILTIN_JUDGERS

    for name, judger in BUILTIN_JUDGERS.items():
        register(name, judger)


@hookimpl
def register_tool_parsers(register: Any) -> None:
    from ajet.core.gateway.tool_parsers import BUILTIN_TOOL_PARSERS

    for name, parser_class in BUILTIN_TOOL_PARSERS.items():
        register(name, parser_class)
