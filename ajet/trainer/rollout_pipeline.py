"""Rollouts ahead of training (rank 0): whole GRPO groups, run on the event loop, for steps the trainer has
not reached yet, within a staleness bound.

    pipeline = RolloutPipeline(...); pipeline.open(completed=step)
    for step ...:
        episodes, metrics = await pipeline.collect(step)   # the step's tasks_per_step groups, in draw order
        ... train, push, validate, checkpoint (pipeline.cursor_state()) ...
        pipeline.mark_completed(step)                      # admits the rollouts of step + 1 + max_staleness

Admission: the groups of step j start only once the trainer has completed step j - 1 - s (s =
`rollout.max_staleness`), so every call of them is served by version >= j - 1 - s, and the policy that trains
them (version j - 1) is at most s versions ahead. With s = 0 a step's rollouts start when the previous step has
fully ended, with the same tasks, seeds and concurrency as the synchronous loop had.

A step's tasks are drawn one group at a time from the cursor, when the step is admitted; episode i of step j
(task-major) samples with the executor seed `seed * 7919 + j`, as before. A group enters the step's batch only
when all its episodes have finished (retries included). With `train.drop_constant_groups`, a finished group
whose ok episodes all have the same rewards is dropped and a new task drawn in its place (DAPO's dynamic
sampling), its episodes continuing the step's index; at most `REPLACEMENTS_PER_TASK * tasks_per_step`
replacements per step, after which constant groups are trained as they are (they have zero advantage).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from ajet.core.rollout import RolloutExecutor
from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from ajet.trainer.data import TaskCursor

#: replacement groups a step may draw per task, when dropping constant groups: a dataset the policy has
#: solved (every group constant) cannot loop for ever
REPLACEMENTS_PER_TASK = 4


@dataclass
class _Group:
    step: int
    index: int  # draw order within the step (its episodes are index * group_size + repeat)
    seq: int  # draw order over the whole run
    cursor_before: dict[str, int]  # the cursor's state before this group's task was drawn
    handle: asyncio.Task[list[Episode]] | None = None
    dropped: bool = False
    finished: float = 0.0  # perf_counter when its last episode ended


@dataclass
class _Step:
    executor: RolloutExecutor
    groups: list[_Group] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    replacements: int = 0
    cap_hit: bool = False


def is_constant(episodes: list[Episode]) -> bool:
    """True when the group's ok episodes all have the same rewards (overall and per target): GRPO gives them
    all a zero advantage. A group with at most one ok episode is constant too: nothing to compare."""
    rewards = [
        (e.reward, tuple(sorted((e.target_rewards or {}).items())))
        for e in episodes
        if e.status == EpisodeStatus.OK
    ]
    return len(set(rewards)) <= 1


class RolloutPipeline:
    def __init__(
        self,
        *,
        make_executor: Callable[[int], RolloutExecutor],
        cursor: TaskCursor,
        tasks: list[LabeledTask],
        tasks_per_step: int,
        group_size: int,
        max_staleness: int,
        last_step: int,
        drop_constant_groups: bool = False,
        console: Console | None = None,
    ) -> None:
        self.make_executor = make_executor  # step -> the step's executor (its seed)
        self.cursor = cursor
        self.tasks = tasks
        self.tasks_per_step = tasks_per_step
        self.group_size = group_size
        self.max_staleness = max_staleness
        self.last_step = last_step
        self.drop_constant_groups = drop_constant_groups
        self.console = console or Console(quiet=True)
        self.max_replacements = REPLACEMENTS_PER_TASK * tasks_per_step
        self.completed = 0
        self._steps: dict[int, _Step] = {}
        self._launches: dict[int, asyncio.Task[None]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._seq = 0
        self._next_launch = 1  # the first step not launched yet

    # -- admission ---------------------------------------------------------------------------------------------

    def open(self, completed: int) -> None:
        """Start with `completed` steps already trained (0, or the resumed step); admits the first steps."""
        self.completed = completed
        self._next_launch = completed + 1
        self._admit()

    def mark_completed(self, step: int) -> None:
        """The trainer has fully ended `step` (update, push, validation, checkpoint): admit what it allows."""
        self.completed = max(self.completed, step)
        self._admit()

    def _admit(self) -> None:
        last = min(self.last_step, self.completed + 1 + self.max_staleness)
        while self._next_launch <= last:
            step, self._next_launch = self._next_launch, self._next_launch + 1
            self._launches[step] = asyncio.create_task(self._launch(step), name=f"ajet-rollouts-{step}")

    async def _launch(self, step: int) -> None:
        previous = self._launches.get(step - 1)
        if previous is not None:
            await previous  # draws stay in step order, however long a backend takes to start
        executor = self.make_executor(step)
        await executor.start()
        if self._semaphore is None:  # one cap over every step's episodes: rollout.max_concurrency
            self._semaphore = asyncio.Semaphore(executor.concurrency)
        state = _Step(executor)
        self._steps[step] = state
        for _ in range(self.tasks_per_step):
            self._start_group(step, state)  # no await in between: the groups queue in draw order

    def _start_group(self, step: int, state: _Step) -> None:
        assert self._semaphore is not None
        group = _Group(step, len(state.groups), self._seq, self.cursor.state_dict())
        self._seq += 1
        task = self.tasks[self.cursor.next_indices(1)[0]]
        state.groups.append(group)
        group.handle = asyncio.create_task(self._run_group(step, state, group, task))

    async def _run_group(self, step: int, state: _Step, group: _Group, task: LabeledTask) -> list[Episode]:
        assert self._semaphore is not None
        episodes = await state.executor.run_group(
            task, first_index=group.index * self.group_size, semaphore=self._semaphore
        )
        group.finished = time.perf_counter()
        if self.drop_constant_groups and is_constant(episodes):
            if state.replacements < self.max_replacements:
                group.dropped = True
                state.replacements += 1
                self._start_group(step, state)  # before this task ends, so collect() sees it
            elif not state.cap_hit:
                state.cap_hit = True
                self.console.print(
                    f"step {step}: {state.replacements} constant groups dropped, the cap of "
                    f"{self.max_replacements} replacements ({REPLACEMENTS_PER_TASK} x train.tasks_per_step) is "
                    "reached: the step's remaining constant groups are trained as they are (zero advantage)"
                )
        return episodes

    # -- the trainer's side ------------------------------------------------------------------------------------

    async def collect(self, step: int) -> tuple[list[Episode], list[Episode], dict[str, float]]:
        """Wait for the step's groups (admitting them first if the caller had not marked step - 1 completed).
        Returns the trained groups' episodes (task-major, in draw order), every episode the step ran (dropped
        groups too, for the rollout metrics), and the pipeline's metrics."""
        self.mark_completed(step - 1)  # collecting step means step - 1 has ended
        if step not in self._launches:
            raise RuntimeError(f"step {step} is past train.steps ({self.last_step}) or was collected already")
        waited = time.perf_counter()
        await self._launches[step]
        state = self._steps[step]
        while pending := [g.handle for g in state.groups if g.handle is not None and not g.handle.done()]:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        wait_s = time.perf_counter() - waited
        trained: list[Episode] = []
        everything: list[Episode] = []
        for group in state.groups:  # draw order
            assert group.handle is not None
            episodes = group.handle.result()  # a group that raised raises here
            everything.extend(episodes)
            if not group.dropped:
                trained.extend(episodes)
        # rollout/time_s: from the step's admission to its last group's end (it may overlap training)
        metrics: dict[str, float] = {
            "rollout/time_s": max(g.finished for g in state.groups) - state.started,
            "rollout/wait_s": wait_s,  # how long the trainer waited for them
        }
        if self.drop_constant_groups:
            metrics["rollout/dropped_constant_groups"] = float(state.replacements)
            metrics["rollout/replacement_cap_hit"] = float(state.cap_hit)
        del self._steps[step]
        del self._launches[step]
        return trained, everything, metrics

    def cursor_state(self) -> dict[str, int]:
        """The cursor for a checkpoint: as it was before the earliest group not yet trained was drawn (groups
        drawn ahead are drawn again after a resume), else as it is."""
        waiting = [g for state in self._steps.values() for g in state.groups]
        if not waiting:
            return self.cursor.state_dict()
        return min(waiting, key=lambda g: g.seq).cursor_before

    async def aclose(self) -> None:
        """Cancel the rollouts still running (steps the run will not train)."""
        handles: list[asyncio.Task[Any]] = list(self._launches.values())
        handles += [g.handle for state in self._steps.values() for g in state.groups if g.handle is not None]
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*handles, return_exceptions=True)
        self._steps.clear()
        self._launches.clear()
