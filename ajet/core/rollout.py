"""The rollout executor: tasks x group size episodes, run concurrently under a cap and a per-episode timeout,
on the run's rollout backend (asyncio tasks here by default, or Ray workers).

The executor owns the record. For each episode it opens the episode's keys at the gateway (an `EpisodeGrant`:
which agents are trained, sampling defaults, seed), hands the backend an `EpisodeAccess` (task, gateway URL,
episode key: plain data), and writes what comes back. An episode that raises, hangs, or returns something that
is not a `WorkflowOutput` is recorded as failed or timed out, with its error and traceback, and the run goes
on. An episode whose worker died (or whose remote client stopped heartbeating) is recorded with the reason and
run again on another worker, up to the backend's `max_retries` times; the step keeps the retry in its place,
so nothing is lost or counted twice. An episode's keys are revoked as
soon as it ends, so a call still in flight from a timed-out episode (or a dead worker) never writes into the
record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ajet.core.config import AjetConfig
from ajet.core.episode_access import EpisodeAccess, RegistryAgentKeys
from ajet.core.episode_runner import EpisodeOutcome
from ajet.core.gateway.keys import EpisodeGrant
from ajet.core.judgers import judge_episode
from ajet.core.rollout_backends.base import RolloutBackend, WorkerLostError
from ajet.core.rollout_backends.local import LocalBackend
from ajet.core.runtime import Runtime
from ajet.core.tuner import AjetTuner
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, Phase, Task, new_id
from ajet.core.workflow import Workflow

EpisodeCallback = Callable[[Episode], None]


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
    #: what the episodes are run for, and the step they belong to (stamped on each: see `Episode.phase`)
    phase: Phase = "train"
    step: int | None = None

    @classmethod
    def from_config(cls, config: AjetConfig, **changes: Any) -> RolloutSettings:
        """The config's rollout settings, with `changes` (e.g. phase="debug")."""
        rollout = config.rollout
        settings = cls(
            rollout.group_size,
            rollout.max_concurrency,
            rollout.episode_timeout_s,
            trainable_targets=config.trainable_targets,
        )
        return dataclasses.replace(settings, **changes)


class RolloutExecutor:
    def __init__(
        self,
        runtime: Runtime,
        make_workflow: Callable[[], Workflow] | None,
        settings: RolloutSettings | None = None,
        backend: RolloutBackend | None = None,
    ) -> None:
        self.runtime = runtime
        self.make_workflow = make_workflow
        self.settings = settings or RolloutSettings.from_config(runtime.config)
        # The run's backend when it has one (Ray workers, remote clients); else episodes run here.
        if backend is None and runtime.rollouts is None and make_workflow is None:
            raise ValueError("episodes run in this process need a workflow (make_workflow)")
        self.backend = (
            backend or runtime.rollouts or LocalBackend(make_workflow, runtime.registry, runtime.gateway)
        )
        self._targets: list[str] | None = None

    async def run(
        self,
        tasks: list[LabeledTask],
        *,
        on_start: EpisodeCallback | None = None,
        on_done: EpisodeCallback | None = None,
    ) -> list[Episode]:
        """Run every task `group_size` times. Returns the finished episodes, in task then repeat order (a retried
        episode in the place of the attempt its worker lost)."""
        episodes = []
        for task in tasks:
            group_id = new_id("grp")
            for repeat in range(self.settings.group_size):
                episodes.append(self._new_episode(task, group_id, repeat))
        await self.start()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def guarded(index: int, episode: Episode) -> Episode:
            async with semaphore:
                if on_start is not None:
                    on_start(episode)
                finished = await self.run_episode(episode, seed=self.episode_seed(index))
            if on_done is not None:
                on_done(finished)
            return finished

        return list(await asyncio.gather(*(guarded(i, e) for i, e in enumerate(episodes))))

    async def start(self) -> None:
        """Start the backend and fix the trained targets: the config's, else the workflow class's own (in each
        episode's grant up front, since the workflow instance may live in another process)."""
        await self.backend.start()
        self._targets = self.settings.trainable_targets
        if self._targets is None and self.make_workflow is not None:  # without a workflow here: every tag
            self._targets = self.make_workflow().trainable_targets

    @property
    def concurrency(self) -> int:
        """Episodes that may run at once: the settings' cap, within the backend's."""
        return min(self.settings.max_concurrency, self.backend.max_concurrency)

    def episode_seed(self, index: int) -> int | None:
        """The sampling seed of episode `index` of a run (task-major: task t, repeat r is t * group_size + r)."""
        return None if self.settings.seed is None else self.settings.seed * 1_000_003 + index * 104_729

    async def run_group(
        self, task: LabeledTask, *, first_index: int, semaphore: asyncio.Semaphore
    ) -> list[Episode]:
        """One task's `group_size` episodes (one GRPO group), seeded as episodes `first_index`,
        `first_index + 1`, ... of a `run`, under a `semaphore` shared with other groups. Call `start()` first.
        Groups created one after another without an await between them take the semaphore in that order, so
        a step run group by group starts its episodes exactly as `run` does."""
        group_id = new_id("grp")
        episodes = []
        for repeat in range(self.settings.group_size):
            episodes.append(self._new_episode(task, group_id, repeat))

        async def guarded(index: int, episode: Episode) -> Episode:
            async with semaphore:
                return await self.run_episode(episode, seed=self.episode_seed(index))

        return list(await asyncio.gather(*(guarded(first_index + i, e) for i, e in enumerate(episodes))))

    async def run_episode(self, episode: Episode, seed: int | None = None) -> Episode:
        """Run one stored (pending) episode on the backend; again, as a new episode that names the attempt it
        replaces, each time its worker is lost (at most the backend's `max_retries` times)."""
        attempt, avoid = episode, None
        retries = max(0, self.backend.max_retries)
        for number in range(retries + 1):
            try:
                return await self._attempt(attempt, seed, avoid=avoid, last=number == retries)
            except WorkerLostError as lost:
                if number == retries:  # recorded as failed (or timed out); no further attempt
                    return self.runtime.store.get_episode(attempt.episode_id)
                avoid = lost.worker
                attempt = self._new_episode(
                    episode.task, episode.group_id, episode.repeat_index, retry_of=attempt.episode_id
                )
        raise AssertionError("unreachable")

    def _new_episode(
        self, task: LabeledTask, group_id: str, repeat: int, retry_of: str | None = None
    ) -> Episode:
        """A pending episode of this executor's run, phase and step, added to the store."""
        episode = Episode(
            run_id=self.runtime.run_id,
            task=task,
            group_id=group_id,
            repeat_index=repeat,
            retry_of=retry_of,
            phase=self.settings.phase,
            step=self.settings.step,
        )
        self.runtime.store.add_episode(episode)
        return episode

    async def _attempt(
        self, episode: Episode, seed: int | None, avoid: str | None = None, last: bool = False
    ) -> Episode:
        store = self.runtime.store
        keys = self.runtime.gateway.keys
        store.set_status(episode.episode_id, EpisodeStatus.RUNNING, started_at=time.time())
        access = self._access(episode, seed)
        lost: WorkerLostError | None = None
        try:
            outcome = await self.backend.run(access, avoid=avoid)
        except WorkerLostError as exc:
            lost = exc
            then = "not retried again" if last else "rolled out again on another worker"
            outcome = EpisodeOutcome(
                status=exc.status,
                error=f"worker lost: {exc.reason} ({then})",
                worker={"worker": exc.worker},
            )
        except Exception as exc:  # the backend itself failed (not the workflow): record it, keep going
            outcome = EpisodeOutcome(
                status=EpisodeStatus.FAILED, error=f"rollout backend error: {type(exc).__name__}: {exc}"
            )
        finally:
            untrained = _add_counts(keys.untrained_calls(episode.episode_id))
            keys.revoke_episode(episode.episode_id)
        finished = await self._record(episode, outcome, _add_counts(untrained, outcome.native_untrained))
        if lost is not None:
            raise lost
        return finished

    def _access(self, episode: Episode, seed: int | None) -> EpisodeAccess:
        gateway = self.runtime.gateway
        grant = EpisodeGrant(
            episode_id=episode.episode_id,
            trainable_targets=self._targets,
            sampling=self.settings.sampling,
            seed=seed,
        )
        config = self.runtime.config
        return EpisodeAccess(
            episode_id=episode.episode_id,
            group_id=episode.group_id,
            repeat_index=episode.repeat_index,
            task=episode.task.without_label(),
            base_url=self.runtime.advertised_url or gateway.connection().base_url,
            episode_key=gateway.keys.open_episode(grant),
            model_name=config.model.served_name,
            framework=config.framework,
            trainable_targets=self._targets,
            timeout_s=self.settings.episode_timeout_s,
        )

    async def _record(self, episode: Episode, outcome: EpisodeOutcome, untrained: dict[str, int]) -> Episode:
        store = self.runtime.store
        fields: dict[str, Any] = {"status": outcome.status, "error": outcome.error, "tb": outcome.traceback}
        output = outcome.output
        if outcome.status == EpisodeStatus.OK and output is not None:
            try:
                if output.reward is None and self.runtime.judge is not None:
                    output = await judge_episode(
                        self.runtime.judge, episode.task, output, lambda: store.calls(episode.episode_id)
                    )
            except Exception as exc:
                fields.update(
                    status=EpisodeStatus.FAILED,
                    error=f"{type(exc).__name__}: {exc}",
                    tb=traceback.format_exc(),
                )
            else:
                fields.update(
                    reward=output.reward,
                    target_rewards=output.target_rewards,
                    is_success=output.is_success,
                    metadata=output.metadata,
                )
        return self._finish(episode, untrained_calls=untrained, worker=outcome.worker, **fields)

    def _finish(
        self, episode: Episode, *, status: EpisodeStatus, tb: str | None = None, **fields: object
    ) -> Episode:
        store = self.runtime.store
        versions = [c.model_version for c in store.calls(episode.episode_id)]
        return store.set_status(
            episode.episode_id,
            status,
            finished_at=time.time(),
            traceback=tb,
            policy_version=min(versions) if versions else None,
            **fields,
        )


def _add_counts(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for name, n in part.items():
            total[name] = total.get(name, 0) + n
    return total


def local_tuner(
    runtime: Runtime,
    episode_id: str,
    *,
    trainable_targets: list[str] | None = None,
    seed: int | None = None,
    sampling: dict[str, Any] | None = None,
    task: Task | None = None,
    framework: str | None = None,
) -> AjetTuner:
    """A tuner for a stored episode, beside the runtime's gateway (for tests, notebooks and tools that drive
    a workflow by hand). Its keys die with `runtime.gateway.keys.revoke_episode(episode_id)`."""
    grant = EpisodeGrant(
        episode_id=episode_id, trainable_targets=trainable_targets, sampling=sampling, seed=seed
    )
    gateway = runtime.gateway
    episode_key = gateway.keys.open_episode(grant)
    access = EpisodeAccess(
        episode_id=episode_id,
        group_id="grp",
        task=task or Task(task_id=episode_id, main_query=""),
        base_url=gateway.connection().base_url,
        episode_key=episode_key,
        model_name=runtime.config.model.served_name,
        framework=framework or runtime.config.framework,
        trainable_targets=trainable_targets,
    )
    return AjetTuner(
        access,
        runtime.registry,
        connection=gateway.connection(),
        agent_keys=RegistryAgentKeys(gateway.keys, episode_key),
    )
