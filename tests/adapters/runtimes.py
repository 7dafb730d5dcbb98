"""What the adapter tests share: a registry that includes the adapter under test, a runtime on a given engine,
and the check that a call was recorded with its agent identity and token ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ajet.core.config import parse_config
from ajet.core.engines.base import InferenceEngine
from ajet.core.plugins import PluginRegistry, collect_registry, make_plugin_manager
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import LlmCall


def registry_with(plugin: Any) -> PluginRegistry:
    """Every installed plugin, plus `plugin` when its entry point is not installed (yet)."""
    pm = make_plugin_manager()
    if not pm.is_registered(plugin):
        pm.register(plugin)
    return collect_registry(pm)


@asynccontextmanager
async def adapter_runtime(
    plugin: Any, engine: InferenceEngine, *, max_tokens: int = 8, timeout_s: float = 60
) -> AsyncIterator[Runtime]:
    """A runtime (gateway, memory store, `engine`) whose registry includes `plugin`; groups of 2 episodes."""
    config = parse_config(
        {
            "workflow": "unused:Unused",
            "rollout": {
                "group_size": 2,
                "episode_timeout_s": timeout_s,
                "sampling": {"max_tokens": max_tokens},
            },
        }
    )
    runtime = await build_runtime(config, registry_with(plugin), MemoryStore(), engine)
    try:
        yield runtime
    finally:
        await runtime.close()


def assert_recorded(call: LlmCall, agent_name: str, target_tag: str) -> None:
    """A trained agent's call, recorded with its identity and aligned token ids and log-probs."""
    assert call.trainable and call.agent_name == agent_name and call.target_tag == target_tag
    assert call.prompt_ids and call.completion_ids
    assert call.logprobs is not None and len(call.completion_ids) == len(call.logprobs)
    assert all(lp <= 0.0 for lp in call.logprobs)
