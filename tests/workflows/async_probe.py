"""Workflows for the asynchronous-training tests and benchmark, on the tiny random model.

`LongTailWorkflow`: one short LLM call, then a wait: most episodes wait `base_s`, the first episode of every
group `tail_factor` times longer, so a step's rollouts have a long tail (as agent episodes with slow tools do).
The call comes first, so its version is the policy's when the episode started.

`ConstantOnEvenTasksWorkflow`: tasks t0, t2, t4, ... reward every episode 1.0 (a constant group: zero advantage);
the other tasks reward the reply's parity, which varies within a group."""

from __future__ import annotations

import asyncio

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


async def _reply(tuner: AjetTuner, query: str) -> str:
    client = tuner.as_raw_openai_sdk_client()
    response = await client.chat.completions.create(
        model="ajet-policy", messages=[{"role": "user", "content": query}]
    )
    return response.choices[0].message.content or ""


class LongTailWorkflow(Workflow):
    base_s: float = 0.02  # seconds most episodes wait after their call (workflow.args)
    tail_factor: float = 5.0  # the first episode of each group waits this many times longer

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        text = await _reply(tuner, workflow_task.task.main_query)
        tail = workflow_task.repeat_index == 0
        await asyncio.sleep(self.base_s * (self.tail_factor if tail else 1.0))
        even = len(text) % 2 == 0
        return WorkflowOutput(reward=1.0 if even else 0.0, is_success=even)


class ConstantOnEvenTasksWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        text = await _reply(tuner, workflow_task.task.main_query)
        number = int(workflow_task.task.task_id.lstrip("t"))
        reward = 1.0 if number % 2 == 0 else float(len(text) % 2 == 0)
        return WorkflowOutput(reward=reward)
