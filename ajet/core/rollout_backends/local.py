"""The default backend: every episode an asyncio task in this process, talking to the gateway in-process."""

from __future__ import annotations

from collections.abc import Callable

from ajet.core.episode_access import EpisodeAccess, RegistryAgentKeys
from ajet.core.episode_runner import EpisodeOutcome, run_episode, this_process
from ajet.core.gateway.app import Gateway
from ajet.core.plugins import PluginRegistry
from ajet.core.rollout_backends.base import RolloutBackend
from ajet.core.workflow import Workflow


class LocalBackend(RolloutBackend):
    def __init__(
        self,
        make_workflow: Callable[[], Workflow],
        registry: PluginRegistry,
        gateway: Gateway,
    ) -> None:
        self.make_workflow = make_workflow
        self.registry = registry
        self.gateway = gateway
        # no limit of its own: the executor's rollout.max_concurrency is the cap
        self.max_concurrency = 1 << 30

    async def run(self, access: EpisodeAccess, *, avoid: str | None = None) -> EpisodeOutcome:
        return await run_episode(
            access,
            self.make_workflow,
            self.registry,
            connection=self.gateway.connection(),
            agent_keys=RegistryAgentKeys(self.gateway.keys, access.episode_key),
            worker=this_process("local"),
        )

    def describe(self) -> str:
        return "local (asyncio tasks in this process)"
