"""What the trainer writes into the store beyond episodes and calls, so the run can be inspected later
(`ajet view`): the run's record (one per run, kept across `--resume`), and per step every trained sample with
its loss mask and advantage and every merge mismatch with its position."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ajet.core.config import AjetConfig
from ajet.core.store.base import Store
from ajet.core.store.records import MismatchRecord, RunRecord, RunStatus, SampleRecord
from ajet.trainer.samples import Mismatch, Sample


def open_run_record(store: Store, run_id: str, config: AjetConfig, run_dir: str, step: int) -> RunRecord:
    """Mark the run as running at `step`: a new record, or the stored one of the run being resumed (its start
    time kept)."""
    fields: dict[str, Any] = {
        "name": config.name,
        "run_dir": run_dir,
        "config": config.model_dump(mode="json", exclude_unset=True),
        "status": "running",
        "step": step,
        "finished_at": None,
        "error": None,
    }
    try:
        return store.update_run(run_id, **fields)
    except KeyError:
        record = RunRecord(run_id=run_id, kind="train", **fields)
        store.put_run(record)
        return record


def close_run_record(
    store: Store, run_id: str, step: int, status: RunStatus, error: str | None = None
) -> None:
    store.update_run(run_id, status=status, step=step, finished_at=time.time(), error=error)


def sample_records(samples: list[Sample], run_id: str, step: int) -> list[SampleRecord]:
    return [
        SampleRecord(
            run_id=run_id,
            step=step,
            episode_id=s.episode_id,
            agent_name=s.agent_name,
            target_tag=s.target_tag,
            call_ids=list(s.call_ids),
            input_ids=list(s.input_ids),
            loss_mask=list(s.loss_mask),
            old_logprobs=list(s.old_logprobs),
            advantage=float(s.advantage),
            reward=float(s.reward),
            version=s.version,
        )
        for s in samples
    ]


def mismatch_records(mismatches: list[Mismatch], run_id: str, step: int) -> list[MismatchRecord]:
    return [MismatchRecord(run_id=run_id, step=step, **dataclasses.asdict(m)) for m in mismatches]
