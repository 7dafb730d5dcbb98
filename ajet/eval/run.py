"""`evaluate`: K samples of every task by one model, with the real rollout machinery (a Runtime for the config
with model.path replaced, a RolloutExecutor with group_size K), scored as an `EvalReport`.

Every model of one command samples with the same seeds (episode i of the run gets the same seed whichever
model runs it), so two models differ by their weights only, not by their luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ajet.core.config import AjetConfig
from ajet.core.plugins import PluginRegistry
from ajet.core.rollout import EpisodeCallback, RolloutExecutor, RolloutSettings
from ajet.core.runtime import build_runtime
from ajet.core.store import open_store
from ajet.core.store.base import Store
from ajet.core.store.records import EpisodeQuery, RunRecord, RunStatus
from ajet.core.types import EpisodeStatus, LabeledTask
from ajet.core.workflow import Workflow
from ajet.eval.report import EvalReport, task_results, totals
from ajet.eval.subjects import EvalSubject
from ajet.trainer.run_files import save_run_config

log = logging.getLogger(__name__)


def eval_seed(seed: int) -> int:
    """The base seed of an evaluation: apart from training's and validation's, the same for every model."""
    return seed * 7919 + 2_000_003


async def evaluate(
    config: AjetConfig,
    subject: EvalSubject,
    tasks: list[LabeledTask],
    *,
    k: int,
    split: str,
    temperature: float,
    seed: int,
    make_workflow: Callable[[], Workflow],
    registry: PluginRegistry | None = None,
    on_ready: Callable[[int], None] | None = None,
    on_done: EpisodeCallback | None = None,
) -> EvalReport:
    """Run every task `k` times with `subject`'s model and score them. `on_ready(total)` is called once the
    model has loaded, `on_done(episode)` as each episode ends."""
    if k < 1:
        raise ValueError(f"k (samples per task) must be at least 1, not {k}")
    if not tasks:
        raise ValueError("no tasks to evaluate")
    loading = time.perf_counter()
    async with _loadable_model(subject) as model_path:
        run_config = with_model(config, model_path, subject)
        store = open_store(subject.store, subject.run_dir)
        runtime = await build_runtime(run_config, registry, store=store, run_id=subject.run_id)
        if runtime.engine is not None and subject.step:  # calls record the checkpoint's policy version
            try:
                await runtime.engine.serve_as_version(subject.step)
            except NotImplementedError as exc:  # a plugin engine without it: its calls say version 0
                log.warning("%s; the eval episodes of step %d record policy version 0", exc, subject.step)
        load_s = time.perf_counter() - loading
        record = subject.source != "run"  # a run's record is its training's; an eval directory gets its own
        if record:
            save_run_config(subject.run_dir, run_config, subject.run_id)
            store.put_run(eval_run_record(run_config, subject))
        status: RunStatus = "failed"
        started_at = time.time()
        try:
            settings = RolloutSettings.from_config(
                config,
                group_size=k,
                seed=eval_seed(seed),
                sampling={"temperature": temperature},
                phase="eval",
                step=subject.step,
            )
            executor = RolloutExecutor(runtime, make_workflow, settings)
            if on_ready is not None:
                on_ready(len(tasks) * k)
            started = time.perf_counter()
            episodes = await executor.run(tasks, on_done=on_done)
            duration_s = time.perf_counter() - started
            status = "finished"
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "stopped"
            raise
        finally:
            if status != "finished":
                close_unfinished_eval(store, subject, since=started_at)
            if record:
                store.update_run(subject.run_id, status=status, finished_at=time.time())
            await runtime.close()
    rows = task_results(tasks, episodes, k)
    return EvalReport(
        label=subject.label,
        source=subject.source,
        model_path=subject.model,
        run_dir=str(subject.run_dir),
        checkpoint=str(subject.checkpoint) if subject.checkpoint else None,
        step=subject.step,
        run_id=subject.run_id,
        store=subject.store_path,
        split=split,
        k=k,
        temperature=temperature,
        seed=seed,
        duration_s=duration_s,
        load_s=load_s,
        per_task=rows,
        **totals(rows, episodes, k),  # type: ignore[arg-type]
    )


def eval_run_record(config: AjetConfig, subject: EvalSubject) -> RunRecord:
    """The record of one model's evaluation in an eval directory's store (kind eval)."""
    return RunRecord(
        run_id=subject.run_id,
        name=f"{config.name} eval {subject.label}",
        kind="eval",
        run_dir=str(subject.run_dir),
        config=config.model_dump(mode="json", exclude_unset=True),
        step=subject.step or 0,
    )


def close_unfinished_eval(store: Store, subject: EvalSubject, since: float) -> None:
    """The episodes an interrupted evaluation leaves pending or running: recorded as failed. Only this
    evaluation's (phase eval, its step, created since it started): a run's store may be training meanwhile."""
    reason = "the evaluation stopped before this episode finished"
    for status in (EpisodeStatus.PENDING, EpisodeStatus.RUNNING):
        query = EpisodeQuery(
            run_id=subject.run_id, phase="eval", step=subject.step, status=status, limit=1000
        )
        while page := [e for e in store.episodes_page(query) if e.created_at >= since]:
            for episode in page:
                store.set_status(
                    episode.episode_id, EpisodeStatus.FAILED, error=reason, finished_at=time.time()
                )


def with_model(config: AjetConfig, model_path: str, subject: EvalSubject) -> AjetConfig:
    """A copy of `config` that loads `model_path` and keeps its run files in the subject's run directory."""
    copy = config.model_copy(deep=True)
    copy.model.path = model_path
    copy.model = copy.model  # marked as set, so that the saved config.yaml (what was set) keeps it
    copy.run_dir = str(subject.run_dir)
    copy.store = subject.store
    return copy


@contextlib.asynccontextmanager
async def _loadable_model(subject: EvalSubject) -> AsyncIterator[str]:
    """The subject's model as a path an engine loads: a LoRA checkpoint merged into its base model in a
    temporary directory (removed afterwards), anything else as it is."""
    if subject.adapter_base is None or subject.checkpoint is None:
        yield subject.model
        return
    from ajet.trainer.checkpoint import load_checkpoint
    from ajet.trainer.export import export_checkpoint

    merged = Path(tempfile.mkdtemp(prefix="ajet-eval-merged-"))
    try:
        export_checkpoint(
            load_checkpoint(subject.checkpoint),
            merged,
            base_model=subject.adapter_base,
            dtype=subject.adapter_dtype,
        )
        yield str(merged)
    finally:
        shutil.rmtree(merged, ignore_errors=True)
