"""An in-memory store for tests and short debug runs. Same contract as the SQLite store."""

from __future__ import annotations

import threading
from typing import Any

from ajet.core.store.base import Store, UnknownEpisode
from ajet.core.store.records import MismatchRecord, RunRecord, SampleRecord
from ajet.core.types import Episode, EpisodeStatus, LlmCall, check_transition


class MemoryStore(Store):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._episodes: dict[str, Episode] = {}
        self._calls: dict[str, list[LlmCall]] = {}
        self._runs: dict[str, RunRecord] = {}
        self._samples: dict[str, list[SampleRecord]] = {}
        self._mismatches: dict[str, list[MismatchRecord]] = {}

    def add_episode(self, episode: Episode) -> None:
        with self._lock:
            if episode.episode_id in self._episodes:
                raise ValueError(f"episode {episode.episode_id} already exists")
            self._episodes[episode.episode_id] = episode.model_copy(deep=True)
            self._calls[episode.episode_id] = []

    def set_status(self, episode_id: str, status: EpisodeStatus, **fields: Any) -> Episode:
        with self._lock:
            current = self._get(episode_id)
            check_transition(current.status, status)
            updated = Episode.model_validate({**current.model_dump(), **fields, "status": status})
            self._episodes[episode_id] = updated
            return updated.model_copy(deep=True)

    def get_episode(self, episode_id: str) -> Episode:
        with self._lock:
            return self._get(episode_id).model_copy(deep=True)

    def episodes(self, run_id: str | None = None) -> list[Episode]:
        with self._lock:
            return [
                e.model_copy(deep=True)
                for e in self._episodes.values()
                if run_id is None or e.run_id == run_id
            ]

    def append_call(self, call: LlmCall) -> None:
        with self._lock:
            if call.episode_id not in self._calls:
                raise UnknownEpisode(call.episode_id)
            self._calls[call.episode_id].append(call.model_copy(deep=True))

    def calls(self, episode_id: str) -> list[LlmCall]:
        with self._lock:
            if episode_id not in self._calls:
                raise UnknownEpisode(episode_id)
            return [c.model_copy(deep=True) for c in self._calls[episode_id]]

    def put_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.run_id] = run.model_copy(deep=True)

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            if run_id not in self._runs:
                raise KeyError(f"no run {run_id!r} in this store")
            return self._runs[run_id].model_copy(deep=True)

    def runs(self) -> list[RunRecord]:
        with self._lock:
            return sorted((r.model_copy(deep=True) for r in self._runs.values()), key=lambda r: r.started_at)

    def add_samples(self, samples: list[SampleRecord]) -> None:
        with self._lock:
            self._check_episodes(s.episode_id for s in samples)
            for sample in samples:
                self._samples.setdefault(sample.episode_id, []).append(sample.model_copy(deep=True))

    def samples(self, episode_id: str) -> list[SampleRecord]:
        with self._lock:
            self._get(episode_id)
            return [s.model_copy(deep=True) for s in self._samples.get(episode_id, [])]

    def add_mismatches(self, mismatches: list[MismatchRecord]) -> None:
        with self._lock:
            self._check_episodes(m.episode_id for m in mismatches)
            for mismatch in mismatches:
                self._mismatches.setdefault(mismatch.episode_id, []).append(mismatch.model_copy(deep=True))

    def mismatches(self, episode_id: str) -> list[MismatchRecord]:
        with self._lock:
            self._get(episode_id)
            return [m.model_copy(deep=True) for m in self._mismatches.get(episode_id, [])]

    def _check_episodes(self, episode_ids: Any) -> None:
        for episode_id in episode_ids:
            self._get(episode_id)

    def _get(self, episode_id: str) -> Episode:
        try:
            return self._episodes[episode_id]
        except KeyError:
            raise UnknownEpisode(episode_id) from None
