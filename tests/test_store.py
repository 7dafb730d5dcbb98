"""The store contract (ajet/core/store/base.py), run against every implementation."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from ajet.core.store import MemoryStore, SqliteStore, Store, UnknownEpisode, open_store
from ajet.core.types import (
    FINISHED_STATUSES,
    Episode,
    EpisodeStatus,
    InvalidTransition,
    LabeledTask,
    LlmCall,
)

S = EpisodeStatus


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = {
        "memory": MemoryStore,
        "sqlite-memory": lambda: SqliteStore(":memory:"),
        "sqlite-file": lambda: SqliteStore(tmp_path / "run" / "ajet.sqlite"),
    }[request.param]()
    yield made
    made.close()


def make_episode(run_id: str = "run", task_id: str = "t0", group_id: str = "g0", repeat: int = 0) -> Episode:
    task = LabeledTask(task_id=task_id, main_query="What is 3 + 4?", label="7", metadata={"difficulty": 1})
    return Episode(run_id=run_id, task=task, group_id=group_id, repeat_index=repeat)


def make_call(episode_id: str, seq: int = 0, rng: random.Random | None = None) -> LlmCall:
    """A call shaped like the gateway records it: chat messages, tools, engine ids with one log-prob each."""
    rng = rng or random.Random(seq)
    prompt_ids = [rng.randrange(49152) for _ in range(40 + seq)]
    completion_ids = [rng.randrange(49152) for _ in range(12)]
    logprobs = [-rng.random() * 5 for _ in completion_ids]
    logprobs[-1] = float("-inf")  # float32 underflow happens; it must survive storage
    return LlmCall(
        episode_id=episode_id,
        seq=seq,
        agent_name="solver",
        target_tag="math",
        messages=[
            {"role": "system", "content": "You add numbers. Use the calculator."},
            {"role": "user", "content": f"What is 3 + {seq}? ünïcode ✓"},
        ],
        tools=[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        logprobs=logprobs,
        completion_text=f"The answer is {3 + seq}.",
        finish_reason="stop",
        response={"role": "assistant", "content": f"The answer is {3 + seq}."},
        sampling={"temperature": 1.0, "top_p": 1.0, "max_tokens": 64},
        model_version=2,
        latency_s=0.25,
    )


def test_add_get_and_filter_by_run(store: Store) -> None:
    a, b, c = make_episode("r1", "t0"), make_episode("r2", "t1"), make_episode("r1", "t2")
    for episode in (a, b, c):
        store.add_episode(episode)
    assert store.get_episode(a.episode_id) == a
    assert [e.episode_id for e in store.episodes()] == [a.episode_id, b.episode_id, c.episode_id]
    assert [e.episode_id for e in store.episodes("r1")] == [a.episode_id, c.episode_id]
    assert store.episodes("nope") == []


def test_valid_chain_sets_fields(store: Store) -> None:
    episode = make_episode()
    store.add_episode(episode)
    running = store.set_status(episode.episode_id, S.RUNNING, started_at=10.0)
    assert running.status == S.RUNNING and running.started_at == 10.0
    done = store.set_status(
        episode.episode_id, S.OK, reward=1.0, is_success=True, finished_at=12.5, metadata={"turns": 3}
    )
    assert store.get_episode(episode.episode_id) == done
    assert (done.status, done.reward, done.is_success, done.duration_s) == (S.OK, 1.0, True, 2.5)
    assert done.metadata == {"turns": 3}
    assert done.task == episode.task

    failed = make_episode(task_id="t1")
    store.add_episode(failed)
    store.set_status(failed.episode_id, S.FAILED, error="boom", traceback="Traceback ...")
    assert store.get_episode(failed.episode_id).error == "boom"


@pytest.mark.parametrize("target", [S.OK, S.TIMED_OUT, S.PENDING])
def test_invalid_transition_changes_nothing(store: Store, target: EpisodeStatus) -> None:
    episode = make_episode()
    store.add_episode(episode)
    with pytest.raises(InvalidTransition, match="cannot go from pending"):
        store.set_status(episode.episode_id, target, reward=1.0, error="x")
    assert store.get_episode(episode.episode_id) == episode


def test_invalid_field_value_changes_nothing(store: Store) -> None:
    episode = make_episode()
    store.add_episode(episode)
    with pytest.raises(ValidationError):
        store.set_status(episode.episode_id, S.RUNNING, reward="not a number")
    with pytest.raises(ValidationError):
        store.set_status(episode.episode_id, S.RUNNING, no_such_field=1)
    assert store.get_episode(episode.episode_id) == episode


@pytest.mark.parametrize("final", sorted(FINISHED_STATUSES))
def test_finished_statuses_are_final(store: Store, final: EpisodeStatus) -> None:
    episode = make_episode()
    store.add_episode(episode)
    store.set_status(episode.episode_id, S.RUNNING)
    store.set_status(episode.episode_id, final, reward=0.5)
    before = store.get_episode(episode.episode_id)
    for target in EpisodeStatus:
        with pytest.raises(InvalidTransition, match="finished"):
            store.set_status(episode.episode_id, target, reward=1.0)
    assert store.get_episode(episode.episode_id) == before


def test_calls_are_appended_in_order(store: Store) -> None:
    one, two = make_episode(task_id="t0"), make_episode(task_id="t1")
    store.add_episode(one)
    store.add_episode(two)
    # Interleaved appends, with seq deliberately not matching append order: reads follow append order.
    appended = {one.episode_id: [], two.episode_id: []}
    for i, episode_id in enumerate([one.episode_id, two.episode_id, one.episode_id, one.episode_id]):
        call = make_call(episode_id, seq=10 - i)
        store.append_call(call)
        appended[episode_id].append(call)
    assert store.calls(one.episode_id) == appended[one.episode_id]
    assert store.calls(two.episode_id) == appended[two.episode_id]
    stored = store.calls(one.episode_id)[0]
    assert stored.logprobs is not None and stored.logprobs[-1] == float("-inf")
    assert len(stored.completion_ids or []) == len(stored.logprobs)


def test_episode_without_calls_has_empty_list(store: Store) -> None:
    episode = make_episode()
    store.add_episode(episode)
    assert store.calls(episode.episode_id) == []


def test_unknown_episode(store: Store) -> None:
    with pytest.raises(UnknownEpisode):
        store.append_call(make_call("ep-missing"))
    with pytest.raises(UnknownEpisode):
        store.calls("ep-missing")
    with pytest.raises(UnknownEpisode):
        store.get_episode("ep-missing")
    with pytest.raises(UnknownEpisode):
        store.set_status("ep-missing", S.RUNNING)
    assert store.episodes() == []


def test_duplicate_episode_is_refused(store: Store) -> None:
    episode = make_episode()
    store.add_episode(episode)
    with pytest.raises(ValueError, match="already exists"):
        store.add_episode(episode.model_copy(update={"group_id": "other"}))
    assert store.get_episode(episode.episode_id).group_id == "g0"
    assert len(store.episodes()) == 1


def test_reads_and_writes_are_copies(store: Store) -> None:
    episode = make_episode()
    store.add_episode(episode)
    episode.metadata["sneaky"] = True  # mutating what was added must not reach the store
    call = make_call(episode.episode_id)
    store.append_call(call)
    assert call.prompt_ids is not None
    call.prompt_ids.append(1)

    got = store.get_episode(episode.episode_id)
    got.metadata["x"] = 1
    got.task.metadata["difficulty"] = 99
    store.episodes()[0].metadata["y"] = 2
    returned = store.set_status(episode.episode_id, S.RUNNING)
    returned.metadata["z"] = 3
    calls = store.calls(episode.episode_id)
    calls[0].messages[0]["content"] = "changed"
    assert calls[0].prompt_ids is not None
    calls[0].prompt_ids.clear()

    fresh = store.get_episode(episode.episode_id)
    assert fresh.metadata == {} and fresh.task.metadata == {"difficulty": 1}
    fresh_call = store.calls(episode.episode_id)[0]
    assert fresh_call.messages[0]["content"].startswith("You add numbers")
    assert fresh_call.prompt_ids == make_call(episode.episode_id).prompt_ids


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    """Gateway-like threads append calls to shared episodes while executor-like threads move their own
    episodes through pending -> running -> ok."""
    shared = [make_episode(task_id=f"shared{i}") for i in range(2)]
    own = [make_episode(task_id=f"own{i}") for i in range(4)]
    for episode in shared + own:
        store.add_episode(episode)
    n_calls = 30
    start = threading.Barrier(len(own) + 2 * len(shared))
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait()
                fn()
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        return run

    def gateway(episode_id: str, writer: int) -> Callable[[], None]:
        return lambda: [
            store.append_call(make_call(episode_id, seq=writer * 1000 + i)) for i in range(n_calls)
        ]

    def executor(episode: Episode) -> Callable[[], None]:
        def run() -> None:
            store.set_status(episode.episode_id, S.RUNNING, started_at=1.0)
            for i in range(n_calls):
                store.append_call(make_call(episode.episode_id, seq=i))
            store.set_status(episode.episode_id, S.OK, reward=1.0, finished_at=2.0)

        return run

    jobs = [gateway(e.episode_id, w) for e in shared for w in range(2)] + [executor(e) for e in own]
    threads = [threading.Thread(target=guarded(job)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors

    for episode in own:
        assert store.get_episode(episode.episode_id).status == S.OK
        assert [c.seq for c in store.calls(episode.episode_id)] == list(range(n_calls))
    for episode in shared:
        seqs = [c.seq for c in store.calls(episode.episode_id)]
        assert len(seqs) == 2 * n_calls
        for writer in range(2):  # each writer's calls keep their relative order
            mine = [s for s in seqs if s // 1000 == writer]
            assert mine == sorted(mine) and len(mine) == n_calls


def test_export_jsonl_round_trip(store: Store, tmp_path: Path) -> None:
    episodes = [make_episode("r1", "t0"), make_episode("r1", "t1"), make_episode("r2", "t2")]
    for episode in episodes:
        store.add_episode(episode)
    for i in range(3):
        store.append_call(make_call(episodes[0].episode_id, seq=i))
    store.set_status(episodes[0].episode_id, S.RUNNING)
    store.set_status(episodes[0].episode_id, S.OK, reward=1.0)

    out = tmp_path / "export" / "r1.jsonl"
    assert store.export_jsonl(out, run_id="r1") == 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["episode_id"] for line in lines] == [e.episode_id for e in episodes[:2]]
    assert lines[0]["status"] == "ok" and lines[0]["reward"] == 1.0
    assert [LlmCall.model_validate(c) for c in lines[0]["calls"]] == store.calls(episodes[0].episode_id)
    assert lines[1]["calls"] == []
    assert Episode.model_validate({k: v for k, v in lines[0].items() if k != "calls"}) == store.get_episode(
        episodes[0].episode_id
    )


def test_sqlite_store_reopens_a_run(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    first = SqliteStore(path)
    episode = make_episode()
    first.add_episode(episode)
    first.set_status(episode.episode_id, S.RUNNING)
    calls = [make_call(episode.episode_id, seq=i) for i in range(3)]
    for call in calls:
        first.append_call(call)
    # A reader opened while the writer is still open (as `ajet view` would be) sees committed rows.
    reader = SqliteStore(path)
    assert reader.calls(episode.episode_id) == calls
    reader.close()
    first.close()

    again = SqliteStore(path)
    assert again.get_episode(episode.episode_id).status == S.RUNNING
    assert again.calls(episode.episode_id) == calls
    again.set_status(episode.episode_id, S.OK)
    again.append_call(make_call(episode.episode_id, seq=3))
    assert len(again.calls(episode.episode_id)) == 4
    with pytest.raises(ValueError, match="already exists"):
        again.add_episode(episode)
    again.close()


def test_sqlite_two_connections_write_one_file(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would be) take turns through SQLite's own locking."""
    path = tmp_path / "ajet.sqlite"
    stores = [SqliteStore(path, busy_timeout_s=10), SqliteStore(path, busy_timeout_s=10)]
    episode = make_episode()
    stores[0].add_episode(episode)
    errors: list[BaseException] = []

    def write(store: SqliteStore, writer: int) -> None:
        try:
            for i in range(40):
                store.append_call(make_call(episode.episode_id, seq=writer * 1000 + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store, n)) for n, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    stores[1].set_status(episode.episode_id, S.RUNNING)
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(stores[0].calls(episode.episode_id)) == 80
    assert stores[0].get_episode(episode.episode_id).status == S.RUNNING
    for store in stores:
        store.close()


def test_sqlite_file_settings_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"calls_episode_id", "calls_run_id", "episodes_run_id"} <= indexes
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this ajet"):
        SqliteStore(path)


#: the episode columns schema version 4 added
V4_COLUMNS = ("phase", "step", "policy_version")


def old_store_file(path: Path, version: int, missing: tuple[str, ...], calls: int = 0) -> Episode:
    """A store file as schema `version` wrote it (without the episode columns added since), holding one
    episode with `calls` calls; returns that episode."""
    store = SqliteStore(path)
    episode = make_episode()
    store.add_episode(episode)
    for seq in range(calls):
        store.append_call(make_call(episode.episode_id, seq))
    store.close()
    conn = sqlite3.connect(path)
    if version < 4:  # no record tables, and no index on the phase column about to go
        for table in ("runs", "samples", "mismatches"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX episodes_run_phase_step")
        conn.execute("DROP INDEX episodes_run_phase_status")
    for column in missing:
        conn.execute(f"ALTER TABLE episodes DROP COLUMN {column}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()
    return episode


def test_sqlite_migrates_a_version_1_file_and_keeps_its_episodes(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    # version 1: no per-role rewards, no untrained counts (nor version 3's columns)
    episode = old_store_file(
        path, 1, ("target_rewards", "untrained_calls", "worker", "retry_of", *V4_COLUMNS)
    )
    store = SqliteStore(path)
    assert store.get_episode(episode.episode_id) == episode
    store.set_status(episode.episode_id, S.RUNNING, untrained_calls={"critic": 2})
    assert store.get_episode(episode.episode_id).untrained_calls == {"critic": 2}


def test_sqlite_migrates_a_version_2_file(tmp_path: Path) -> None:
    path = tmp_path / "ajet.sqlite"
    episode = old_store_file(
        path, 2, ("worker", "retry_of", *V4_COLUMNS)
    )  # no record of where an episode ran
    store = SqliteStore(path)
    assert store.get_episode(episode.episode_id) == episode
    where = {"backend": "ray", "worker": "ray-worker-1", "pid": 4242}
    store.set_status(episode.episode_id, S.RUNNING, worker=where, retry_of="ep-lost")
    stored = store.get_episode(episode.episode_id)
    assert (stored.worker, stored.retry_of) == (where, "ep-lost")


def test_sqlite_refuses_values_it_cannot_store() -> None:
    store = SqliteStore(":memory:")
    episode = make_episode()
    store.add_episode(episode)
    with pytest.raises(TypeError, match="'metadata' cannot be stored as JSON"):
        store.set_status(episode.episode_id, S.RUNNING, metadata={"handle": object()})
    assert store.get_episode(episode.episode_id) == episode


def test_open_store(tmp_path: Path) -> None:
    assert isinstance(open_store("memory", None), MemoryStore)
    default = open_store(None, tmp_path / "run")
    assert isinstance(default, SqliteStore) and default.path == str(tmp_path / "run" / "ajet.sqlite")
    default.close()
    explicit = open_store(tmp_path / "other.sqlite", None)
    assert isinstance(explicit, SqliteStore) and (tmp_path / "other.sqlite").exists()
    explicit.close()
    with pytest.raises(ValueError, match="needs a run_dir"):
        open_store(None, None)


def test_close_unfinished_fails_pending_and_running_episodes_of_one_run(store: Store) -> None:
    from ajet.core.store.base import close_unfinished

    pending, running, done, other = (make_episode(r, f"t{i}") for i, r in enumerate(["r1", "r1", "r1", "r2"]))
    for episode in (pending, running, done, other):
        store.add_episode(episode)
    store.set_status(running.episode_id, EpisodeStatus.RUNNING)
    store.set_status(done.episode_id, EpisodeStatus.RUNNING)
    store.set_status(done.episode_id, EpisodeStatus.OK, reward=1.0)
    assert close_unfinished(store, "the run stopped", "r1") == 2
    for episode in (pending, running):
        closed = store.get_episode(episode.episode_id)
        assert (
            closed.status == EpisodeStatus.FAILED and closed.error == "the run stopped" and closed.finished_at
        )
    assert store.get_episode(done.episode_id).reward == 1.0
    assert store.get_episode(other.episode_id).status == EpisodeStatus.PENDING  # another run's
