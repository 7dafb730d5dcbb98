"""What the viewer keeps between requests: the RUN_DIRs it serves, one read-only store per store file, one
metrics reader per metrics.jsonl, one tokenizer per model. The runs themselves are found again on each request."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ajet.core.store import SqliteStore, Store
from ajet.core.store.records import RunRecord
from ajet.viewer import curves
from ajet.viewer.runs import RunDir, discover
from ajet.viewer.tokens import Decoder, Tokenizers

log = logging.getLogger(__name__)


@dataclass
class OpenedStore:
    store: Store | None
    note: str  # why there is no store (shown on the run's pages)


class Viewer:
    def __init__(self, roots: list[Path], tokenizers: Tokenizers | None = None) -> None:
        self.roots = [Path(root) for root in roots]
        self.tokenizers = tokenizers or Tokenizers()
        self._lock = threading.Lock()
        self._stores: dict[Path, OpenedStore] = {}
        self._readers: dict[Path, curves.MetricsReader] = {}

    def runs(self) -> dict[str, RunDir]:
        return discover(self.roots)

    def store(self, run: RunDir) -> OpenedStore:
        """The run's store, opened read-only once per file."""
        if run.store_path is None:
            return OpenedStore(None, run.store_note)
        path = run.store_path.resolve()
        with self._lock:
            opened = self._stores.get(path)
            if opened is not None:
                return opened
            try:
                opened = self._stores[path] = OpenedStore(SqliteStore(path, read_only=True), "")
            except Exception as exc:
                # an older schema (until a resume migrates it), a file that is not SQLite: said on the page, and
                # tried again on the next request
                log.info("cannot open %s: %s", path, exc)
                opened = OpenedStore(None, f"cannot read the store {path}: {exc}")
            return opened

    def metrics(self, run: RunDir) -> list[dict[str, float]]:
        path = run.metrics_path.resolve()
        with self._lock:
            reader = self._readers.get(path)
            if reader is None:
                reader = self._readers[path] = curves.MetricsReader(path)
        return reader.rows()

    def decoder(self, run: RunDir) -> Decoder:
        model = run.config.get("model")
        spec = model.get("path") if isinstance(model, dict) else model if isinstance(model, str) else None
        from ajet.core.models import SMOLLM2_ALIAS

        return self.tokenizers.for_model(str(spec or SMOLLM2_ALIAS), run.base_dir)

    def close(self) -> None:
        with self._lock:
            for opened in self._stores.values():
                if opened.store is not None:
                    opened.store.close()
            self._stores.clear()


def run_record(store: Store | None, run: RunDir) -> RunRecord | None:
    """The store's record of this run: the run.json id, else the store's only train run."""
    if store is None:
        return None
    if run.run_id is not None:
        try:
            return store.get_run(run.run_id)
        except KeyError:
            return None
    records = [r for r in store.runs() if r.kind == "train"]
    return records[-1] if len(records) == 1 else None


def summary(viewer: Viewer, run: RunDir) -> dict[str, Any]:
    """What the runs page shows of a run (and /api/runs returns)."""
    opened = viewer.store(run)
    record = run_record(opened.store, run)
    rows = viewer.metrics(run)
    episodes: dict[str, dict[str, int]] = {}
    if opened.store is not None and (run.run_id is not None or record is not None):
        episodes = opened.store.episode_summary(record.run_id if record else run.run_id or "")
    train = _section(run.config, "train")
    model = _section(run.config, "model").get("path") or (run.config.get("model") or None)
    return {
        "key": run.key,
        "name": record.name if record else run.name,
        "path": str(run.path),
        "run_id": record.run_id if record else run.run_id,
        "kind": record.kind if record else "train",
        "status": record.status if record else "unknown",
        "error": record.error if record else None,
        "step": record.step if record else curves.last_step(rows),
        # out of train.steps for a training run; an eval's or debug's step is that of the policy it ran
        "steps": train.get("steps") if (record is None or record.kind == "train") else None,
        "started_at": record.started_at if record else None,
        "updated_at": record.updated_at if record else None,
        # a killed run stays "running" in its record, but its updated_at (set each step) stops moving
        "quiet_s": time.time() - record.updated_at if record and record.status == "running" else None,
        "validation": curves.validation(rows),
        "episodes": episodes,
        "episode_total": sum(sum(c.values()) for c in episodes.values()),
        "note": opened.note,
        "model": model if isinstance(model, str) else None,
        "config_brief": config_brief(run.config),
    }


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def config_brief(config: dict[str, Any]) -> str:
    """The settings that tell runs apart at a glance (those the config sets)."""
    train, rollout = _section(config, "train"), _section(config, "rollout")
    parts = [
        ("algorithm", train.get("algorithm")),
        ("advantage", train.get("advantage_estimator")),
        ("loss", train.get("policy_loss")),
        ("lr", train.get("lr")),
        ("group", rollout.get("group_size")),
        ("tasks/step", train.get("tasks_per_step")),
        ("kl", train.get("kl_coef")),
    ]
    return " · ".join(f"{name} {value}" for name, value in parts if value is not None)
