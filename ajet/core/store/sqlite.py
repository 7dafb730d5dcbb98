"""The default store: one SQLite file per run, in WAL mode so `ajet view` can read while training writes.

Every `Episode` and `LlmCall` field has its own column (lists and dicts as JSON text), so a run can be
inspected with plain SQL. `PRAGMA user_version` records the schema version for later migrations.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import from_json, to_json

from ajet.core.store.base import Store, UnknownEpisode
from ajet.core.types import Episode, EpisodeStatus, LlmCall, check_transition

SCHEMA_VERSION = 3
_M = TypeVar("_M", Episode, LlmCall)

# `seq` (INTEGER PRIMARY KEY) is the insertion order; contract reads sort by it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    seq INTEGER PRIMARY KEY,
    episode_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    task TEXT NOT NULL,
    task_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    repeat_index INTEGER NOT NULL,
    status TEXT NOT NULL,
    reward REAL,
    target_rewards TEXT NOT NULL DEFAULT '{}',
    is_success INTEGER,
    metadata TEXT NOT NULL,
    untrained_calls TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    traceback TEXT,
    worker TEXT NOT NULL DEFAULT '{}',
    retry_of TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS episodes_run_id ON episodes (run_id);
CREATE TABLE IF NOT EXISTS calls (
    row INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    episode_id TEXT NOT NULL REFERENCES episodes (episode_id),
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    agent_name TEXT NOT NULL,
    target_tag TEXT NOT NULL,
    trainable INTEGER NOT NULL,
    messages TEXT NOT NULL,
    tools TEXT,
    prompt_ids TEXT,
    completion_ids TEXT,
    logprobs TEXT,
    completion_text TEXT,
    finish_reason TEXT NOT NULL,
    response TEXT NOT NULL,
    sampling TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_episode_id ON calls (episode_id);
CREATE INDEX IF NOT EXISTS calls_run_id ON calls (run_id);
"""

_EPISODE_COLUMNS = tuple(Episode.model_fields)
_CALL_COLUMNS = tuple(LlmCall.model_fields)
_EPISODE_JSON = frozenset({"task", "metadata", "target_rewards", "untrained_calls", "worker"})
_CALL_JSON = frozenset(
    {"messages", "tools", "prompt_ids", "completion_ids", "logprobs", "response", "sampling"}
)

_INSERT_EPISODE = (
    f"INSERT INTO episodes ({', '.join(_EPISODE_COLUMNS)}, task_id) "
    f"VALUES ({', '.join('?' for _ in _EPISODE_COLUMNS)}, ?)"
)
# One statement both checks that the episode exists and copies its run_id: no row inserted = unknown episode.
_INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(_CALL_COLUMNS)}, run_id) "
    f"SELECT {', '.join('?' for _ in _CALL_COLUMNS)}, run_id FROM episodes WHERE episode_id = ?"
)
_UPDATE_EPISODE = (
    f"UPDATE episodes SET {', '.join(f'{c} = ?' for c in _EPISODE_COLUMNS)}, task_id = ? WHERE episode_id = ?"
)
_SELECT_EPISODES = f"SELECT {', '.join(_EPISODE_COLUMNS)} FROM episodes"
_SELECT_CALLS = f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls WHERE episode_id = ? ORDER BY row"


class SqliteStore(Store):
    """`SqliteStore(path)` opens (or creates) a store file; `":memory:"` keeps it in memory.

    One connection guarded by a lock serves every thread: writes are small, and SQLite serialises writers
    anyway. Each write commits on its own; with WAL and synchronous=NORMAL a commit does not wait for fsync
    (a power cut may lose the last commits, never corrupt the file).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit; the few multi-statement writes open their own transaction.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has store schema version {version}, newer than this ajet's "
                    f"{SCHEMA_VERSION}; upgrade ajet to read it"
                )
            # Version 0 is a new file and gets the current schema; an older file gets each ALTER step it lacks.
            if version < 1:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
            else:
                if version < 2:  # 2: per-role rewards and the count of untrained calls
                    for column in ("target_rewards", "untrained_calls"):
                        self._conn.execute(
                            f"ALTER TABLE episodes ADD COLUMN {column} TEXT NOT NULL DEFAULT '{{}}'"
                        )
                if version < 3:  # 3: where an episode ran, and which lost attempt it re-runs
                    self._conn.execute("ALTER TABLE episodes ADD COLUMN worker TEXT NOT NULL DEFAULT '{}'")
                    self._conn.execute("ALTER TABLE episodes ADD COLUMN retry_of TEXT")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._check_columns()

    def _check_columns(self) -> None:
        # Columns are derived from the pydantic models; a new model field needs a migration, and this says so
        # at open time instead of failing on the first insert.
        for table, columns in (("episodes", _EPISODE_COLUMNS), ("calls", _CALL_COLUMNS)):
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in present]
            if missing:
                raise RuntimeError(
                    f"{self.path}: table {table} lacks columns {missing}; add a migration step in "
                    "SqliteStore._migrate and bump SCHEMA_VERSION"
                )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a read-check-write cannot race another process.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def add_episode(self, episode: Episode) -> None:
        with self._lock:
            try:
                self._conn.execute(_INSERT_EPISODE, _episode_row(episode))
            except sqlite3.IntegrityError:
                raise ValueError(f"episode {episode.episode_id} already exists") from None

    def set_status(self, episode_id: str, status: EpisodeStatus, **fields: Any) -> Episode:
        if "episode_id" in fields:
            raise ValueError("set_status cannot change episode_id: it is the episode's identity")
        with self._lock, self._transaction():
            current = self._get(episode_id)
            check_transition(current.status, status)
            updated = Episode.model_validate({**current.model_dump(), **fields, "status": status})
            self._conn.execute(_UPDATE_EPISODE, (*_episode_row(updated), episode_id))
            return updated

    def get_episode(self, episode_id: str) -> Episode:
        with self._lock:
            return self._get(episode_id)

    def episodes(self, run_id: str | None = None) -> list[Episode]:
        with self._lock:
            if run_id is None:
                rows = self._conn.execute(f"{_SELECT_EPISODES} ORDER BY seq").fetchall()
            else:
                rows = self._conn.execute(
                    f"{_SELECT_EPISODES} WHERE run_id = ? ORDER BY seq", (run_id,)
                ).fetchall()
            return [_decode(Episode, _EPISODE_COLUMNS, _EPISODE_JSON, row) for row in rows]

    def append_call(self, call: LlmCall) -> None:
        values = _encode(call.model_dump(), _CALL_COLUMNS, _CALL_JSON)
        with self._lock:
            cursor = self._conn.execute(_INSERT_CALL, (*values, call.episode_id))
            if cursor.rowcount == 0:
                raise UnknownEpisode(call.episode_id)

    def calls(self, episode_id: str) -> list[LlmCall]:
        with self._lock:
            rows = self._conn.execute(_SELECT_CALLS, (episode_id,)).fetchall()
            if not rows and not self._exists(episode_id):
                raise UnknownEpisode(episode_id)
            return [_decode(LlmCall, _CALL_COLUMNS, _CALL_JSON, row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _get(self, episode_id: str) -> Episode:
        row = self._conn.execute(f"{_SELECT_EPISODES} WHERE episode_id = ?", (episode_id,)).fetchone()
        if row is None:
            raise UnknownEpisode(episode_id)
        return _decode(Episode, _EPISODE_COLUMNS, _EPISODE_JSON, row)

    def _exists(self, episode_id: str) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
            is not None
        )


def _episode_row(episode: Episode) -> tuple[Any, ...]:
    # task_id is stored twice (inside `task` and as a column) so runs can be grouped by task in plain SQL.
    return (*_encode(episode.model_dump(), _EPISODE_COLUMNS, _EPISODE_JSON), episode.task_id)


def _encode(data: dict[str, Any], columns: tuple[str, ...], json_columns: frozenset[str]) -> tuple[Any, ...]:
    return tuple(
        None if data[c] is None else _to_json(c, data[c]) if c in json_columns else data[c] for c in columns
    )


def _to_json(column: str, value: Any) -> str:
    # pydantic_core's Rust encoder is ~10x faster than json.dumps on long float lists (log-probs), which keeps
    # an append well under a millisecond. It writes -inf/NaN as -Infinity/NaN; `from_json` reads them back.
    try:
        return to_json(value, fallback=_plain).decode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"field {column!r} cannot be stored as JSON: {exc}") from None


def _plain(value: Any) -> Any:
    # numpy scalars and arrays are common in reward metadata; .tolist() turns them into plain Python values.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(
        f"{type(value).__name__} is not JSON-serializable; use plain str/int/float/bool/list/dict"
    )


def _decode(
    model: type[_M], columns: tuple[str, ...], json_columns: frozenset[str], row: tuple[Any, ...]
) -> _M:
    data = {
        c: from_json(v) if c in json_columns and v is not None else v
        for c, v in zip(columns, row, strict=True)
    }
    return model.model_validate(data)
