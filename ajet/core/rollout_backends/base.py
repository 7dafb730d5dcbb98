"""The interface every rollout backend implements: run one episode from its `EpisodeAccess`, return how it
ended. The executor (`ajet.core.rollout`) owns the record: it opens each episode's keys, hands the access to
the backend, and writes the outcome; a backend only runs workflows."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ajet.core.episode_access import EpisodeAccess
from ajet.core.episode_runner import EpisodeOutcome


class WorkerLostError(RuntimeError):
    """The process running an episode died or vanished (killed, out of memory, its node gone): the episode's
    outcome is unknown. The executor records the attempt as failed with this reason and retries it once on
    another worker."""

    def __init__(self, reason: str, worker: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.worker = worker


class RolloutBackend(ABC):
    #: how many episodes the backend can run at once (the executor hands it at most this many, and at most
    #: rollout.max_concurrency)
    max_concurrency: int = 8

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
