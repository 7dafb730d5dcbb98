"""The record of a run in the store (schema v4): runs, samples, mismatches, paged and filtered episode reads,
read-only opening, and the migration of a version-3 file. Run against every store implementation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from ajet.core.store import MemoryStore, SqliteStore, Store, UnknownEpisode
from ajet.core.store.records import EpisodeQuery, MismatchRecord, RunRecord, SampleRecord
from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from tests.test_store import V4_COLUMNS, make_call, make_episode, old_store_file

S = EpisodeStatus


@pytest.fixture(params=["memory", "sqlite-file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "ajet.sqlite")
    yield made
    made.close()


def sample(episode_id: str, step: int = 1, advantage: float = 0.5) -> SampleRecord:
    return SampleRecord(
        run_id="run",
        step=step,
        episode_id=episode_id,
        agent_name="solver",
        target_tag="math",
        call_ids=["call-1", "call-2"],
        input_ids=[1, 2, 3, 4, 5],
        loss_mask=[0, 0, 1, 1, 0],
        old_logprobs=[0.0, 0.0, -0.25, float("-inf"), 0.0],
        advantage=advantage,
        reward=1.0,
        version=step - 1,
    )


def test_a_run_record_round_trips_and_updates(store: Store) -> None:
    record = RunRecord(run_id="r1", name="arith", config={"train": {"steps": 2}}, started_at=10.0)
    store.put_run(record)
    store.put_run(RunRecord(run_id="r0", name="older", started_at=5.0))
    assert store.get_run("r1") == record
    updated = store.update_run("r1", status="finished", step=2, finished_at=20.0)
    assert (updated.status, updated.step, updated.started_at) == ("finished", 2, 10.0)
    assert updated.updated_at > record.updated_at
    assert store.get_run("r1") == updated
    assert [r.run_id for r in store.runs()] == ["r0", "r1"]  # oldest first
    with pytest.raises(KeyError, match="no run 'nope'"):
        store.get_run("nope")
    with pytest.raises(ValidationError):
        store.update_run("r1", status="exploded")
    assert store.get_run("r1") == updated


def test_samples_and_mismatches_are_kept_per_episode(store: Store) -> None:
    first, second = make_episode(task_id="t0"), make_episode(task_id="t1")
    store.add_episode(first)
    store.add_episode(second)
    records = [sample(first.episode_id, advantage=0.5), sample(first.episode_id, advantage=-1.5)]
    store.add_samples(records)
    store.add_samples([])
    assert store.samples(first.episode_id) == records  # -inf log-probs survive too
    assert store.samples(second.episode_id) == []
    mismatch = MismatchRecord(
        run_id="run",
        step=1,
        episode_id=first.episode_id,
        agent_name="solver",
        call_id="call-2",
        reason="prefix_mismatch",
        position=17,
        expected=42,
        found=None,
    )
    store.add_mismatches([mismatch])
    assert store.mismatches(first.episode_id) == [mismatch]
    assert store.mismatches(second.episode_id) == []
    # a record of an unknown episode is refused, and the batch it came in adds nothing
    with pytest.raises(UnknownEpisode):
        store.add_samples([sample(second.episode_id), sample("ep-missing")])
    assert store.samples(second.episode_id) == []
    with pytest.raises(UnknownEpisode):
        store.samples("ep-missing")


def filled(store: Store) -> list[Episode]:
    """Twelve episodes of run r1 (train steps 1-3, val, eval) and two of r2, with rewards, statuses and tags."""
    episodes = []
    for i in range(12):
        phase = "train" if i < 9 else ("val" if i < 11 else "eval")
        task = LabeledTask(task_id=f"t{i}", main_query="q")
        episode = Episode(run_id="r1", task=task, group_id=f"g{i // 3}", phase=phase, step=i // 3 + 1)
        store.add_episode(episode)
        store.set_status(episode.episode_id, S.RUNNING)
        if i % 4 == 3:
            episode = store.set_status(episode.episode_id, S.FAILED, error="boom")
        else:
            episode = store.set_status(episode.episode_id, S.OK, reward=i / 10)
        call = make_call(episode.episode_id)
        if i % 2:
            call = call.model_copy(update={"target_tag": "critic"})
        store.append_call(call)
        episodes.append(episode)
    for _ in range(2):
        store.add_episode(Episode(run_id="r2", task=LabeledTask(task_id="x", main_query="q"), group_id="gx"))
    return episodes


def ids(episodes: list[Episode]) -> list[str]:
    return [e.episode_id for e in episodes]


def test_episode_pages_filter_and_count(store: Store) -> None:
    made = filled(store)

    def page(**query: object) -> list[str]:
        q = EpisodeQuery(run_id="r1", **query)
        selected = store.episodes_page(q)
        assert store.count_episodes(q) == len(
            store.episodes_page(q.model_copy(update={"offset": 0, "limit": 1000}))
        )
        return ids(selected)

    assert page() == ids(made)
    assert page(limit=5) == ids(made[:5]) and page(offset=10, limit=5) == ids(made[10:])
    assert page(order="-seq", limit=3) == ids(made[::-1][:3])
    assert page(phase="val") == ids(made[9:11])
    assert page(phase="train", step=2) == ids(made[3:6])
    assert page(status=S.FAILED) == ids([e for i, e in enumerate(made) if i % 4 == 3])
    assert page(min_reward=0.5, max_reward=0.9) == ids([made[5], made[6], made[8], made[9]])
    assert page(target_tag="critic", phase="train") == ids([made[i] for i in (1, 3, 5, 7)])
    assert page(target_tag="nobody") == []
    assert store.count_episodes(EpisodeQuery(run_id="r1", step=2, limit=1)) == 3  # the limit does not count
    assert store.count_episodes(EpisodeQuery()) == 14
    assert store.episode_summary("r1") == {
        "train": {"ok": 7, "failed": 2},
        "val": {"ok": 2},
        "eval": {"failed": 1},
    }
    assert store.episode_summary("r2") == {"train": {"pending": 2}}


def test_episode_query_refuses_bad_pages() -> None:
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"phase": "warmup"}, {"order": "reward"}):
        with pytest.raises(ValidationError):
            EpisodeQuery(**bad)


def test_a_read_only_store_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    writer = SqliteStore(path)
    episode = make_episode()
    writer.add_episode(episode)
    reader = SqliteStore(path, read_only=True)
    assert reader.get_episode(episode.episode_id) == episode
    writer.append_call(make_call(episode.episode_id))  # a run still training: the reader sees new commits
    assert len(reader.calls(episode.episode_id)) == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.add_episode(make_episode(task_id="t9"))
    reader.close()
    writer.close()
    with pytest.raises(FileNotFoundError, match="no store file"):
        SqliteStore(tmp_path / "missing.sqlite", read_only=True)


def test_sqlite_migrates_a_version_3_file(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    episode = old_store_file(path, 3, V4_COLUMNS, calls=1)  # its call has model_version 2
    with pytest.raises(RuntimeError, match="older than this ajet's 4; open it once for writing"):
        SqliteStore(path, read_only=True)
    migrated = SqliteStore(path)
    stored = migrated.get_episode(episode.episode_id)
    # an old episode reads as training, step unknown; its policy version is taken from its recorded calls
    assert (stored.phase, stored.step, stored.policy_version) == ("train", None, 2)
    assert stored.model_copy(update={"policy_version": None}) == episode
    migrated.add_samples([sample(episode.episode_id)])
    migrated.put_run(RunRecord(run_id="run"))
    migrated.close()
    reader = SqliteStore(path, read_only=True)
    assert len(reader.samples(episode.episode_id)) == 1 and reader.runs()[0].run_id == "run"
    reader.close()
