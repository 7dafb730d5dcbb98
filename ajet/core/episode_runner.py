"""One episode, run wherever the rollout backend puts it: here, in a Ray worker, on another machine.

`run_episode(access, make_workflow, registry)` makes a fresh workflow, gives it a tuner built from `access`,
runs `execute` under the episode's timeout and returns an `EpisodeOutcome`: plain data that travels back to the
process that owns the run's record. A workflow that raises, hangs, or returns something that is not a
`WorkflowOutput` gives a failed or timed-out outcome with its error and traceback; this function never raises
for the workflow's sake.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ajet.core.episode_access import AgentKeySource, EpisodeAccess
from ajet.core.gateway.connection import GatewayConnection
from ajet.core.plugins import PluginRegistry
from ajet.core.tuner import AjetTuner
from ajet.core.types import EpisodeStatus, WorkflowOutput, WorkflowTask
from ajet.core.workflow import Workflow

T = TypeVar("T")
CANCEL_GRACE_S = 1.0


class EpisodeOutcome(BaseModel):
    """How an episode ended, as the process that ran it saw it."""

    model_config = ConfigDict(extra="forbid")

    status: EpisodeStatus
    output: WorkflowOutput | None = None  # when status is ok
    error: str | None = None
    traceback: str | None = None
    #: calls of untrained agents' native debug models (the gateway counts the calls it served itself)
    native_untrained: dict[str, int] = Field(default_factory=dict)
    #: where it ran: backend, worker, host, pid
    worker: dict[str, Any] = Field(default_factory=dict)
    started_at: float | None = None


def this_process(backend: str, worker: str | None = None) -> dict[str, Any]:
    where: dict[str, Any] = {"backend": backend, "host": socket.gethostname(), "pid": os.getpid()}
    if worker is not None:
        where["worker"] = worker
    return where


async def run_episode(
    access: EpisodeAccess,
    make_workflow: Callable[[], Workflow],
    registry: PluginRegistry,
    *,
    connection: GatewayConnection | None = None,
    agent_keys: AgentKeySource | None = None,
    worker: dict[str, Any] | None = None,
) -> EpisodeOutcome:
    import time

    started = time.time()
    tuner: AjetTuner | None = None
    try:
        workflow = make_workflow()
        # One source of truth: the run's targets replace the workflow's own on the instance itself, so code
        # in `execute` that reads `self.trainable_targets` (rewards, formatters, asserts) agrees with what the
        # gateway trains. A copy, so an episode that mutates it cannot touch the next one's.
        if access.trainable_targets is not None:
            workflow.trainable_targets = list(access.trainable_targets)
        tuner = AjetTuner(access, registry, connection=connection, agent_keys=agent_keys)
        workflow_task = WorkflowTask(
            task=access.task,
            episode_id=access.episode_id,
            group_id=access.group_id,
            repeat_index=access.repeat_index,
        )
        output = _check_output(
            await _run_with_timeout(workflow.execute(workflow_task, tuner), access.timeout_s)
        )
    except TimeoutError:
        outcome = EpisodeOutcome(
            status=EpisodeStatus.TIMED_OUT,
            error=f"episode did not finish within {access.timeout_s:g} s (rollout.episode_timeout_s)",
        )
    except Exception as exc:
        outcome = EpisodeOutcome(
            status=EpisodeStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    else:
        outcome = EpisodeOutcome(status=EpisodeStatus.OK, output=output)
    outcome.native_untrained = tuner.native_untrained_calls() if tuner is not None else {}
    outcome.worker = worker or this_process("local")
    outcome.started_at = started
    return outcome


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
