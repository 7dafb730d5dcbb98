"""Workflows for the Ray rollout tests: they say which process ran them, and one kills its own worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


async def one_call(tuner: AjetTuner, question: str) -> str:
    client = tuner.as_raw_openai_sdk_client()
    reply = await client.chat.completions.create(
        model="ajet-policy", messages=[{"role": "user", "content": question}]
    )
    return reply.choices[0].message.content or ""


class ReportsItsProcess(Workflow):
    """One model call, then `tool_sleep_s` of a tool that waits (an I/O-bound agent)."""

    tool_sleep_s: float = 0.0

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        text = await one_call(tuner, workflow_task.task.main_query)
        await asyncio.sleep(self.tool_sleep_s)
        return WorkflowOutput(reward=float(len(text) % 2), metadata={"pid": os.getpid()})


class KillsItsWorkerOnce(Workflow):
    """The first attempt of task `victim`'s first episode SIGKILLs its own process mid-episode (after a recorded
    call), as an OOM kill or a crashed native tool would. `marker_dir` remembers that it already did."""

    marker_dir: str
    victim: str = "t1"
    always: bool = False  # kill on every attempt, not just the first

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        await one_call(tuner, workflow_task.task.main_query)
        marker = Path(self.marker_dir) / f"{workflow_task.task.task_id}-{workflow_task.repeat_index}"
        first = workflow_task.repeat_index == 0 and workflow_task.task.task_id == self.victim
        if first and (self.always or not marker.exists()):
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return WorkflowOutput(reward=1.0, metadata={"pid": os.getpid()})


class BlocksItsWorker(Workflow):
    """Task `victim` calls a tool that blocks its worker's event loop far past the episode timeout."""

    victim: str = "t1"
    block_s: float = 30.0

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        await one_call(tuner, workflow_task.task.main_query)
        if workflow_task.task.task_id == self.victim and workflow_task.repeat_index == 0:
            time.sleep(self.block_s)  # the point: a tool that blocks
        return WorkflowOutput(reward=1.0, metadata={"pid": os.getpid()})
