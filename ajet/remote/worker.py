"""`ajet worker --server URL -c CONFIG`: run an unchanged `Workflow` class on the episodes an `ajet serve`
run hands out, `concurrency` at a time, until the run finishes.

Each episode runs exactly as it does in `ajet train` (`episode_runner.run_episode`: a fresh workflow, a tuner
from the episode's access, the episode's timeout), against the server's gateway over HTTP; its outcome is
reported with `finish` or `abort`. So the same workflow trains locally, on Ray workers, or from here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ajet.core.episode_runner import run_episode, this_process
from ajet.core.plugins import PluginRegistry
from ajet.core.types import EpisodeStatus
from ajet.core.workflow import Workflow
from ajet.remote.client import EpisodeClient, EpisodeRefused, RemoteEpisode, RunFinished

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    episodes: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # outcomes the server did not take (the lease had expired, or the server restarted)

    def add(self, status: str) -> None:
        self.episodes += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def describe(self) -> str:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self.by_status.items()))
        return f"{self.episodes} episodes ({parts or 'none'})" + (
            f", {self.refused} not taken by the server" if self.refused else ""
        )


async def run_worker(
    client: EpisodeClient,
    make_workflow: Callable[[], Workflow],
    registry: PluginRegistry,
    *,
    concurrency: int = 1,
    connect_timeout_s: float = 600.0,
    max_episodes: int | None = None,
    on_episode: Callable[[WorkerStats], None] | None = None,
) -> WorkerStats:
    """Claim and run episodes until the server says the run is over (or `max_episodes` were run). A server
    that is not up yet (still loading its model) is waited for up to `connect_timeout_s`; one that goes away
    for that long ends the worker with ConnectionError."""
    stats = WorkerStats()
    claimed = 0
    unreachable_since: list[float] = []

    async def claim() -> RemoteEpisode | None:
        try:
            episode = await client.aclaim([], wait_s=20.0)
        except ConnectionError:
            now = time.monotonic()
            if not unreachable_since:
                unreachable_since.append(now)
            if now - unreachable_since[0] > connect_timeout_s:
                raise
            await asyncio.sleep(1.0)
            return None
        unreachable_since.clear()
        return episode

    async def slot() -> None:
        nonlocal claimed
        while max_episodes is None or claimed < max_episodes:
            episode = await claim()
            if episode is None:
                continue
            claimed += 1
            await run_one(episode)

    async def run_one(episode: RemoteEpisode) -> None:
        episode.start_heartbeats()
        try:
            outcome = await run_episode(
                episode.access,
                make_workflow,
                registry,
                worker=this_process("remote", client.name),
            )
        finally:
            episode.stop_heartbeats()
        try:
            if outcome.status == EpisodeStatus.OK and outcome.output is not None:
                output = outcome.output
                await episode.afinish(
                    output.reward,
                    is_success=output.is_success,
                    target_rewards=output.target_rewards,
                    metadata=output.metadata,
                    untrained_calls=outcome.native_untrained,
                )
            else:
                await episode.aabort(
                    outcome.error or outcome.status.value,
                    traceback=outcome.traceback,
                    timed_out=outcome.status == EpisodeStatus.TIMED_OUT,
                )
        except EpisodeRefused as exc:
            stats.refused += 1
            logger.warning("episode %s: the server did not take its outcome (%s)", episode.episode_id, exc)
            return
        except ConnectionError as exc:  # the server went away (a restart): it re-offers the episode itself
            stats.refused += 1
            logger.warning("episode %s: %s", episode.episode_id, exc)
            return
        stats.add(outcome.status.value)
        if on_episode is not None:
            on_episode(stats)

    tasks = [asyncio.create_task(slot()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    except RunFinished:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
    return stats
