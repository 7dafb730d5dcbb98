"""Where episodes and their LLM calls are kept: SQLite (WAL) on disk by default, in memory for tests."""

from __future__ import annotations

from pathlib import Path

from ajet.core.store.base import Store, UnknownEpisode
from ajet.core.store.memory import MemoryStore
from ajet.core.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "UnknownEpisode", "open_store"]

DEFAULT_STORE_NAME = "ajet.sqlite"


def open_store(spec: str | Path | None, run_dir: Path | None) -> Store:
    """Open the store a config names.

    `None`: `<run_dir>/ajet.sqlite`; `"memory"`: a `MemoryStore` (lost at exit); anything else: the path of a
    SQLite file, created if missing (`":memory:"` is an in-memory SQLite store).
    """
    if spec is None:
        if run_dir is None:
            raise ValueError(
                "open_store needs a run_dir when no store path is given; set store: <path> or a run dir"
            )
        return SqliteStore(Path(run_dir) / DEFAULT_STORE_NAME)
    if isinstance(spec, str):
        if spec == "memory":
            return MemoryStore()
        if not spec.strip():
            raise ValueError(
                "store path is empty; write a file path, 'memory', or leave it out for the default"
            )
    return SqliteStore(spec)
