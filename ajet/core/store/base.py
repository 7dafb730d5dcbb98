"""The store contract: every implementation passes the same contract tests (tests/test_store.py).

- Calls are append-only: `append_call` never overwrites; a call for an unknown episode is refused.
- Episodes move through the status table in `ajet.core.types.EPISODE_TRANSITIONS`; any other change raises
  `InvalidTransition` and leaves the stored episode unchanged.
- Safe under concurrent writers: the gateway (possibly in another thread) appends calls while the rollout
  executor updates episodes.
- Reads return copies: mutating a returned object never changes the store.
- Beside episodes and calls a store keeps the record of a run (`ajet.core.store.records`): the run, each
  trained sample with its advantage and loss mask, each merge mismatch. Episode listings are paged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ajet.core.store.records import EpisodeQuery, MismatchRecord, RunRecord, SampleRecord
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

    # ---- the record of a run ----

    @abstractmethod
    def put_run(self, run: RunRecord) -> None:
        """Insert the run, or replace the stored record of the same `run_id`."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run's record; KeyError when the store has none."""

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Set some fields of a stored run (and its `updated_at`). Returns the new record."""
        import time

        current = self.get_run(run_id)
        updated = RunRecord.model_validate({**current.model_dump(), "updated_at": time.time(), **fields})
        self.put_run(updated)
        return updated

    @abstractmethod
    def add_samples(self, samples: list[SampleRecord]) -> None: ...

    @abstractmethod
    def samples(self, episode_id: str) -> list[SampleRecord]:
        """The samples trained from an episode, in the order they were added."""

    @abstractmethod
    def add_mismatches(self, mismatches: list[MismatchRecord]) -> None: ...

    @abstractmethod
    def mismatches(self, episode_id: str) -> list[MismatchRecord]: ...

    # ---- paged reads ----

    def episodes_page(self, query: EpisodeQuery) -> list[Episode]:
        """One page of the episodes `query` selects, in insertion order (`order="-seq"`: newest first)."""
        selected = self._select(query)
        if query.order == "-seq":
            selected.reverse()
        return selected[query.offset : query.offset + query.limit]

    def count_episodes(self, query: EpisodeQuery) -> int:
        """How many episodes `query` selects, ignoring its offset and limit."""
        return len(self._select(query))

    def episode_summary(self, run_id: str) -> dict[str, dict[str, int]]:
        """Episode counts of one run: {phase: {status: count}}."""
        summary: dict[str, dict[str, int]] = {}
        for episode in self.episodes(run_id):
            counts = summary.setdefault(episode.phase, {})
            counts[episode.status.value] = counts.get(episode.status.value, 0) + 1
        return summary

    def _select(self, query: EpisodeQuery) -> list[Episode]:
        # The generic filter, over `episodes()`; SqliteStore answers in SQL instead.
        def keep(episode: Episode) -> bool:
            if query.phase is not None and episode.phase != query.phase:
                return False
            if query.step is not None and episode.step != query.step:
                return False
            if query.status is not None and episode.status != query.status:
                return False
            if query.min_reward is not None and (episode.reward is None or episode.reward < query.min_reward):
                return False
            if query.max_reward is not None and (episode.reward is None or episode.reward > query.max_reward):
                return False
            if query.target_tag is not None:
                return any(c.target_tag == query.target_tag for c in self.calls(episode.episode_id))
            return True

        return [e for e in self.episodes(query.run_id) if keep(e)]

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
