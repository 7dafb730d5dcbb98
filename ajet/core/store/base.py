"""The store contract: every implementation passes the same contract tests (tests/test_store.py).

- Calls are append-only: `append_call` never overwrites; a call for an unknown episode is refused.
- Episodes move through the status table in `ajet.core.types.EPISODE_TRANSITIONS`; any other change raises
  `InvalidTransition` and leaves the stored episode unchanged.
- Safe under concurrent writers: the gateway (possibly in another thread) appends calls while the rollout
  executor updates episodes.
- Reads return copies: mutating a returned object never changes the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ajet.core.types import Episode, EpisodeStatus, LlmCall


class UnknownEpisode(KeyError):
    pass


class Store(ABC):
    @abstractmethod
    def add_episode(self, episode: Episode) -> None:
        """Insert a new episode (status pending or as given). A duplicate `episode_id` raises ValueError."""

    @abstractmethod
    def set_status(self, episode_id: str, status: EpisodeStatus, **fields: Any) -> Episode:
        """Change an episode's status (checked against the transition table) and set any other `Episode`
        fields given (reward, is_success, metadata, error, traceback, started_at, finished_at). Returns the
        updated episode."""

    @abstractmethod
    def get_episode(self, episode_id: str) -> Episode: ...

    @abstractmethod
    def episodes(self, run_id: str | None = None) -> list[Episode]:
        """All episodes (of one run when given), in insertion order."""

    @abstractmethod
    def append_call(self, call: LlmCall) -> None: ...

    @abstractmethod
    def calls(self, episode_id: str) -> list[LlmCall]:
        """An episode's calls in the order they were appended."""

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def export_jsonl(self, path: str | Path, run_id: str | None = None) -> int:
        """Write one JSON line per episode, its calls nested under "calls". Returns the number of episodes."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with path.open("w", encoding="utf-8") as out:
            for episode in self.episodes(run_id):
                out.write(trajectory_json(episode, self.calls(episode.episode_id)) + "\n")
                count += 1
        return count


def close_unfinished(store: Store, reason: str, run_id: str | None = None) -> int:
    """Record the episodes left pending or running (of one run, or of all) as failed with `reason`: episodes
    whose process stopped (a crash before a resume) or that were cancelled (rollouts drawn ahead for steps
    the run did not train). Returns how many."""
    import time

    count = 0
    for episode in store.episodes(run_id):
        if episode.status in (EpisodeStatus.PENDING, EpisodeStatus.RUNNING):
            store.set_status(episode.episode_id, EpisodeStatus.FAILED, error=reason, finished_at=time.time())
            count += 1
    return count


def trajectory_json(episode: Episode, calls: Iterable[LlmCall]) -> str:
    record = episode.model_dump(mode="json")
    record["calls"] = [call.model_dump(mode="json") for call in calls]
    import json

    return json.dumps(record, ensure_ascii=False)
