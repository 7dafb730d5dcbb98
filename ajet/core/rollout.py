"""The rollout executor: tasks x group size episodes, run concurrently under a cap and a per-episode timeout.

An episode that raises, hangs, or returns something that is not a `WorkflowOutput` is recorded as failed or
timed out, with its error and traceback, and the run goes on. An episode's API keys are revoked as soon as it
ends, so a call still in flight from a timed-out episode can never write into the record.
"""

from __future__ import annotations

import asyncio
import math
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from ajet.core.judgers import judge_episode
from ajet.core.runtime import Runtime
from ajet.core.tuner import AjetTuner
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, WorkflowOutput, WorkflowTask, new_id
from ajet.core.workflow import Workflow

EpisodeCallback = Callable[[Episode], None]
T = TypeVar("T")
CANCEL_GRACE_S = 1.0


@dataclass
class RolloutSettings:
    group_size: int = 4
    max_concurrency: int = 8
    episode_timeout_s: float = 300.0
    trainable_targets: list[str] | None = None  # overrides the workflow's own when set
    #: base seed: episode i of a run samples with seeds derived from (seed, i), so rollouts are reproducible
    seed: int | None = None
    #: sampling defaults for every call of these episodes (e.g. temperature 0 for validation)
    sampling: dict[str, Any] | None = None


class RolloutExecutor:
    def __init__(
        self,
        runtime: Runtime,
        make_workflow: Callable[[], Workflow],
        settings: RolloutSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.make_workflow = make_workflow
        rollout = runtime.config.rollout
        self.settings = settings or RolloutSettings(
            rollout.group_size,
            rollout.max_concurrency,
            rollout.episode_timeout_s,
            trainable_targets=runtime.config.trainable_targets,
        )

    async def run(
        self,
        tasks: list[LabeledTask],
        *,
        on_start: EpisodeCallback | None = None,
        on_done: EpisodeCallback | None = None,
    ) -> list[Episode]:
        """Run every task `group_size` times. Returns the finished episodes, in task then repeat order."""
        episodes = []
        for task in tasks:
            group_id = new_id("grp")
            for repeat in range(self.settings.group_size):
                episode = Episode(
                    run_id=self.runtime.run_id, task=task, group_id=group_id, repeat_index=repeat
                )
                self.runtime.store.add_episode(episode)
                episodes.append(episode)
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)

        async def guarded(index: int, episode: Episode) -> Episode:
            async with semaphore:
                if on_start is not None:
                    on_start(episode)
                seed = (
                    None if self.settings.seed is None else self.settings.seed * 1_000_003 + index * 104_729
                )
                finished = await self.run_episode(episode, seed=seed)
            if on_done is not None:
                on_done(finished)
            return finished

        return list(await asyncio.gather(*(guarded(i, e) for i, e in enumerate(episodes))))

    async def run_episode(self, episode: Episode, seed: int | None = None) -> Episode:
        store = self.runtime.store
        keys = self.runtime.gateway.keys
        started = time.time()
        store.set_status(episode.episode_id, EpisodeStatus.RUNNING, started_at=started)
        try:
            workflow = self.make_workflow()
            # One source of truth: the config's targets replace the workflow's own on the instance itself, so
            # code in `execute` that reads `self.trainable_targets` (rewards, formatters, asserts) agrees with
            # what the gateway trains. A copy, so an episode that mutates it cannot touch the next one's.
            if self.settings.trainable_targets is not None:
                workflow.trainable_targets = list(self.settings.trainable_targets)
            targets = workflow.trainable_targets
            tuner = AjetTuner(
                episode_id=episode.episode_id,
                gateway=self.runtime.gateway,
                registry=self.runtime.registry,
                trainable_targets=targets,
                framework=self.runtime.config.framework,
                model_name=self.runtime.config.model.served_name,
                seed=seed,
                sampling=self.settings.sampling,
            )
            workflow_task = WorkflowTask(
                task=episode.task.without_label(),
                episode_id=episode.episode_id,
                group_id=episode.group_id,
                repeat_index=episode.repeat_index,
            )
            output = await _run_with_timeout(
                workflow.execute(workflow_task, tuner), self.settings.episode_timeout_s
            )
            output = _check_output(output)
            if output.reward is None and self.runtime.judge is not None:
                output = await judge_episode(
                    self.runtime.judge, episode.task, output, lambda: store.calls(episode.episode_id)
                )
        except TimeoutError:
            outcome: dict[str, Any] = {
                "status": EpisodeStatus.TIMED_OUT,
                "error": f"episode did not finish within {self.settings.episode_timeout_s:g} s "
                "(rollout.episode_timeout_s)",
            }
        except Exception as exc:
            outcome = {
                "status": EpisodeStatus.FAILED,
                "error": f"{type(exc).__name__}: {exc}",
                "tb": traceback.format_exc(),
            }
        else:
            outcome = {
                "status": EpisodeStatus.OK,
                "reward": output.reward,
                "target_rewards": output.target_rewards,
                "is_success": output.is_success,
                "metadata": output.metadata,
            }
        finally:
            untrained = keys.untrained_calls(episode.episode_id)
            keys.revoke_episode(episode.episode_id)
        return self._finish(episode, untrained_calls=untrained, **outcome)

    def _finish(
        self, episode: Episode, *, status: EpisodeStatus, tb: str | None = None, **fields: object
    ) -> Episode:
        return self.runtime.store.set_status(
            episode.episode_id, status, finished_at=time.time(), traceback=tb, **fields
        )


async def _run_with_timeout(coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Like `asyncio.wait_for`, but never waits on a workflow that ignores cancellation: on timeout the task is
    cancelled, given a moment to clean up, and abandoned."""
    task = asyncio.ensure_future(coroutine)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        raise TimeoutError
    return task.result()


def _check_output(output: object) -> WorkflowOutput:
    if isinstance(output, dict):
        output = WorkflowOutput.model_validate(output)
    if not isinstance(output, WorkflowOutput):
        raise TypeError(f"Workflow.execute must return a WorkflowOutput, got {type(output).__name__}")
    if output.reward is not None and not math.isfinite(output.reward):
        raise ValueError(f"the workflow returned a non-finite reward ({output.reward})")
    return output
