"""The default store: one SQLite file per run, in WAL mode so `ajet view` can read while training writes.

Every field of `Episode`, `LlmCall` and the run records (`ajet.core.store.records`) has its own column (lists
and dicts as JSON text), so a run can be inspected with plain SQL. `PRAGMA user_version` records the schema
version; opening an older file migrates it (`_migrate`), and `read_only=True` opens one without ever writing.
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
from ajet.core.store.records import EpisodeQuery, MismatchRecord, RunRecord, SampleRecord
from ajet.core.types import Episode, EpisodeStatus, LlmCall, check_transition

SCHEMA_VERSION = 4
_M = TypeVar("_M", Episode, LlmCall, RunRecord, SampleRecord, MismatchRecord)

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
    phase TEXT NOT NULL DEFAULT 'train',
    step INTEGER,
    policy_version INTEGER,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS episodes_run_id ON episodes (run_id);
CREATE INDEX IF NOT EXISTS episodes_run_phase_step ON episodes (run_id, phase, step);
CREATE INDEX IF NOT EXISTS episodes_run_phase_status ON episodes (run_id, phase, status);
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
-- the viewer's role filter: does this episode have a call of that tag?
CREATE INDEX IF NOT EXISTS calls_episode_tag ON calls (episode_id, target_tag);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    row INTEGER PRIMARY KEY,
    sample_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    episode_id TEXT NOT NULL REFERENCES episodes (episode_id),
    agent_name TEXT NOT NULL,
    target_tag TEXT NOT NULL,
    call_ids TEXT NOT NULL,
    input_ids TEXT NOT NULL,
    loss_mask TEXT NOT NULL,
    old_logprobs TEXT NOT NULL,
    advantage REAL NOT NULL,
    reward REAL NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_episode_id ON samples (episode_id);
CREATE TABLE IF NOT EXISTS mismatches (
    row INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    episode_id TEXT NOT NULL REFERENCES episodes (episode_id),
    agent_name TEXT NOT NULL,
    call_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    position INTEGER NOT NULL,
    expected INTEGER,
    found INTEGER
);
CREATE INDEX IF NOT EXISTS mismatches_episode_id ON mismatches (episode_id);
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


class _Table:
    """A table that holds one pydantic record per row, every field a column."""

    def __init__(self, name: str, model: type[_M], json_columns: frozenset[str]) -> None:
        self.name, self.model, self.json = name, model, json_columns
        self.columns = tuple(model.model_fields)
        self.insert = (
            f"INSERT INTO {name} ({', '.join(self.columns)}) VALUES ({', '.join('?' for _ in self.columns)})"
        )
        self.select = f"SELECT {', '.join(self.columns)} FROM {name}"

    def row(self, record: Any) -> tuple[Any, ...]:
        return _encode(record.model_dump(), self.columns, self.json)

    def decode(self, row: tuple[Any, ...]) -> Any:
        return _decode(self.model, self.columns, self.json, row)


_RUNS = _Table("runs", RunRecord, frozenset({"config"}))
_SAMPLES = _Table("samples", SampleRecord, frozenset({"call_ids", "input_ids", "loss_mask", "old_logprobs"}))
_MISMATCHES = _Table("mismatches", MismatchRecord, frozenset())


class SqliteStore(Store):
    """`SqliteStore(path)` opens (or creates) a store file; `":memory:"` keeps it in memory.

    One connection guarded by a lock serves every thread: writes are small, and SQLite serialises writers
    anyway. Each write commits on its own; with WAL and synchronous=NORMAL a commit does not wait for fsync
    (a power cut may lose the last commits, never corrupt the file).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        if read_only:
            # mode=ro: SQLite itself refuses every write; WAL readers still see each commit as it lands.
            if not Path(self.path).is_file():
                raise FileNotFoundError(f"no store file at {self.path}")
            self._conn = sqlite3.connect(
                f"{Path(self.path).resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self._check_read_only_version()
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; the few multi-statement writes open their own transaction.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _check_read_only_version(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._conn.close()
            newer = version > SCHEMA_VERSION
            raise RuntimeError(
                f"{self.path} has store schema version {version}, "
                + (
                    f"newer than this ajet's {SCHEMA_VERSION}; upgrade ajet to read it"
                    if newer
                    else f"older than this ajet's {SCHEMA_VERSION}; open it once for writing to migrate it "
                    "(e.g. SqliteStore(path), or `ajet train --resume RUN_DIR`)"
                )
            )

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
                if version < 4:  # 4: the record of a run: phases, steps, runs, samples, mismatches
                    # Episodes of older files were all rolled out for training or validation; which, and at
                    # which step, was not recorded: they read as phase train, step unknown.
                    self._conn.execute("ALTER TABLE episodes ADD COLUMN phase TEXT NOT NULL DEFAULT 'train'")
                    self._conn.execute("ALTER TABLE episodes ADD COLUMN step INTEGER")
                    self._conn.execute("ALTER TABLE episodes ADD COLUMN policy_version INTEGER")
                    self._conn.execute(
                        "UPDATE episodes SET policy_version = "
                        "(SELECT MIN(model_version) FROM calls WHERE calls.episode_id = episodes.episode_id)"
                    )
                # the tables and indexes added since (every statement is IF NOT EXISTS)
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._check_columns()

    def _check_columns(self) -> None:
        # Columns are derived from the pydantic models; a new model field needs a migration, and this says so
        # at open time instead of failing on the first insert.
        tables = [("episodes", _EPISODE_COLUMNS), ("calls", _CALL_COLUMNS)]
        tables += [(t.name, t.columns) for t in (_RUNS, _SAMPLES, _MISMATCHES)]
        for table, columns in tables:
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

    # ---- the record of a run ----

    def put_run(self, run: RunRecord) -> None:
        with self._lock:
            self._conn.execute(_RUNS.insert.replace("INSERT", "INSERT OR REPLACE", 1), _RUNS.row(run))

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._conn.execute(f"{_RUNS.select} WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return _RUNS.decode(row)

    def runs(self) -> list[RunRecord]:
        with self._lock:
            rows = self._conn.execute(f"{_RUNS.select} ORDER BY started_at").fetchall()
        return [_RUNS.decode(row) for row in rows]

    def add_samples(self, samples: list[SampleRecord]) -> None:
        self._add_rows(_SAMPLES, samples)

    def samples(self, episode_id: str) -> list[SampleRecord]:
        return self._episode_rows(_SAMPLES, episode_id)

    def add_mismatches(self, mismatches: list[MismatchRecord]) -> None:
        self._add_rows(_MISMATCHES, mismatches)

    def mismatches(self, episode_id: str) -> list[MismatchRecord]:
        return self._episode_rows(_MISMATCHES, episode_id)

    def _add_rows(self, table: _Table, records: list[Any]) -> None:
        if not records:
            return
        rows = [table.row(r) for r in records]
        with self._lock, self._transaction():  # all or none: an unknown episode adds nothing
            try:
                self._conn.executemany(table.insert, rows)
            except sqlite3.IntegrityError as exc:
                unknown = [r.episode_id for r in records if not self._exists(r.episode_id)]
                if unknown:
                    raise UnknownEpisode(unknown[0]) from None
                raise ValueError(f"{table.name}: {exc}") from None

    def _episode_rows(self, table: _Table, episode_id: str) -> list[Any]:
        with self._lock:
            rows = self._conn.execute(
                f"{table.select} WHERE episode_id = ? ORDER BY row", (episode_id,)
            ).fetchall()
            if not rows and not self._exists(episode_id):
                raise UnknownEpisode(episode_id)
        return [table.decode(row) for row in rows]

    # ---- paged reads, in SQL ----

    def episodes_page(self, query: EpisodeQuery) -> list[Episode]:
        where, args = _where(query)
        order = "seq DESC" if query.order == "-seq" else "seq"
        with self._lock:
            rows = self._conn.execute(
                f"{_SELECT_EPISODES}{where} ORDER BY {order} LIMIT ? OFFSET ?",
                (*args, query.limit, query.offset),
            ).fetchall()
        return [_decode(Episode, _EPISODE_COLUMNS, _EPISODE_JSON, row) for row in rows]

    def count_episodes(self, query: EpisodeQuery) -> int:
        where, args = _where(query)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM episodes{where}", args).fetchone()[0])

    def episode_summary(self, run_id: str) -> dict[str, dict[str, int]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT phase, status, COUNT(*) FROM episodes WHERE run_id = ? GROUP BY phase, status",
                (run_id,),
            ).fetchall()
        summary: dict[str, dict[str, int]] = {}
        for phase, status, count in rows:
            summary.setdefault(phase, {})[status] = int(count)
        return summary

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


def _where(query: EpisodeQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("run_id", query.run_id),
        ("phase", query.phase),
        ("step", query.step),
        ("status", None if query.status is None else query.status.value),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if query.min_reward is not None:
        clauses.append("reward >= ?")
        args.append(query.min_reward)
    if query.max_reward is not None:
        clauses.append("reward <= ?")
        args.append(query.max_reward)
    if query.target_tag is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM calls WHERE calls.episode_id = episodes.episode_id AND calls.target_tag = ?)"
        )
        args.append(query.target_tag)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


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
