"""The interface every rollout backend implements: run one episode from its `EpisodeAccess`, return how it
ended. The executor (`ajet.core.rollout`) owns the record: it opens each episode's keys, hands the access to
the backend, and writes the outcome; a backend only runs workflows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ajet.core.episode_access import EpisodeAccess
from ajet.core.episode_runner import EpisodeOutcome
from ajet.core.types import EpisodeStatus

if TYPE_CHECKING:
    from ajet.core.gateway.app import Gateway


class WorkerLostError(RuntimeError):
    """The process running an episode died or vanished (killed, out of memory, its node gone): the episode's
    outcome is unknown. The executor records the attempt with this reason (as `status`: failed, or timed out
    for a remote client that stopped heartbeating) and runs the episode again, up to the backend's
    `max_retries` times, on another worker."""

    def __init__(self, reason: str, worker: str, *, status: EpisodeStatus = EpisodeStatus.FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.worker = worker
        self.status = status


class RolloutBackend(ABC):
    #: how many episodes the backend can run at once (the executor hands it at most this many, and at most
    #: rollout.max_concurrency)
    max_concurrency: int = 8
    #: how many times an episode whose worker was lost is run again (each attempt stays in the store)
    max_retries: int = 1

    def mount(self, gateway: Gateway) -> None:  # noqa: B027 - optional
        """Called once, before the gateway serves HTTP: a backend that serves routes of its own (the remote
        backend's episode API) adds them here."""

    async def start(self) -> None:  # noqa: B027 - optional: backends with workers start them here
        """Start workers; called once before the first episode. Idempotent."""

    @abstractmethod
    async def run(self, access: EpisodeAccess, *, avoid: str | None = None) -> EpisodeOutcome:
        """Run one episode. `avoid` names a worker not to use (the one that just lost this episode). Raises
        WorkerLostError when the worker died; any failure of the workflow itself is an outcome, not an error."""

    async def aclose(self) -> None:  # noqa: B027 - optional
        """Stop the workers."""

    def describe(self) -> str:
        return type(self).__name__
