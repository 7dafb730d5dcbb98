"""Agents whose time goes to a tool, for benchmarks/scale.py: one model call, then a tool that waits.

`AsyncToolAgent` awaits its tool (an async HTTP client, say): episodes overlap on one event loop. `BlockingToolAgent`
calls a blocking tool (a sync SDK, a subprocess.run, a simulator step): it holds its process's event loop, so on
one process episodes run one after another, and only more processes (Ray workers) run them side by side.
"""

from __future__ import annotations

import asyncio
import time

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


async def ask(tuner: AjetTuner, question: str) -> str:
    client = tuner.as_raw_openai_sdk_client()
    reply = await client.chat.completions.create(
        model="ajet-policy", messages=[{"role": "user", "content": question}], max_tokens=4
    )
    return reply.choices[0].message.content or ""


class AsyncToolAgent(Workflow):
    tool_s: float = 0.5

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        text = await ask(tuner, workflow_task.task.main_query)
        await asyncio.sleep(self.tool_s)
        return WorkflowOutput(reward=float(len(text) % 2))


class BlockingToolAgent(Workflow):
    tool_s: float = 0.5

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        text = await ask(tuner, workflow_task.task.main_query)
        time.sleep(self.tool_s)  # the point: a tool that blocks its process
        return WorkflowOutput(reward=float(len(text) % 2))
