"""`evaluate`: K samples of every task by one model, with the real rollout machinery (a Runtime for the config
with model.path replaced, a RolloutExecutor with group_size K), scored as an `EvalReport`.

Every model of one command samples with the same seeds (episode i of the run gets the same seed whichever
model runs it), so two models differ by their weights only, not by their luck.
"""

from __future__ import annotations

import contextlib
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
from ajet.core.types import LabeledTask
from ajet.core.workflow import Workflow
from ajet.eval.report import EvalReport, task_results, totals
from ajet.eval.subjects import EvalSubject


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
        runtime = await build_runtime(run_config, registry, store=store)
        load_s = time.perf_counter() - loading
        runtime.run_id = subject.run_id
        try:
            settings = RolloutSettings(
                group_size=k,
                max_concurrency=config.rollout.max_concurrency,
                episode_timeout_s=config.rollout.episode_timeout_s,
                trainable_targets=config.trainable_targets,
                seed=eval_seed(seed),
                sampling={"temperature": temperature},
            )
            executor = RolloutExecutor(runtime, make_workflow, settings)
            if on_ready is not None:
                on_ready(len(tasks) * k)
            started = time.perf_counter()
            episodes = await executor.run(tasks, on_done=on_done)
            duration_s = time.perf_counter() - started
        finally:
            await runtime.close()
    rows = task_results(tasks, episodes, k)
    return EvalReport(
        label=subject.label,
        source=subject.source,
        model_path=subject.model,
        run_dir=str(subject.run_dir) if subject.source == "run" else None,
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


def with_model(config: AjetConfig, model_path: str, subject: EvalSubject) -> AjetConfig:
    """A copy of `config` that loads `model_path` and keeps its run files in the subject's run directory."""
    copy = config.model_copy(deep=True)
    copy.model.path = model_path
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
