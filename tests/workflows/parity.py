"""A one-call workflow for trainer tests on the tiny random model: the reward is whether the reply has an even
number of characters, so groups get mixed rewards (a GRPO signal) whatever the random weights say."""

from __future__ import annotations

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


class ParityWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        response = await client.chat.completions.create(
            model="ajet-policy", messages=[{"role": "user", "content": workflow_task.task.main_query}]
        )
        text = response.choices[0].message.content or ""
        even = len(text) % 2 == 0
        return WorkflowOutput(reward=1.0 if even else 0.0, is_success=even, metadata={"answer": text})


class TwoTurnWorkflow(Workflow):
    """Two calls in one conversation (the second extends the first), for timeline merging."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        messages = [{"role": "user", "content": workflow_task.task.main_query}]
        first = await client.chat.completions.create(model="ajet-policy", messages=messages)
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "user", "content": "again"},
        ]
        second = await client.chat.completions.create(model="ajet-policy", messages=messages)
        text = second.choices[0].message.content or ""
        return WorkflowOutput(reward=float(len(text) % 2 == 0))


class MixedTemperatureWorkflow(Workflow):
    """Two calls in one conversation, each at its own temperature, which also varies across a group's
    episodes (as `as_langchain_model(temperature=0.7)` or an agent's ModelSettings would): the trainer must
    recompute every token at its own call's temperature, not the config's."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        first_t, second_t = (0.5, 0.9, 1.3, 0.7)[workflow_task.repeat_index % 4], 1.6
        messages = [{"role": "user", "content": workflow_task.task.main_query}]
        first = await client.chat.completions.create(
            model="ajet-policy", messages=messages, temperature=first_t
        )
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "user", "content": "again"},
        ]
        second = await client.chat.completions.create(
            model="ajet-policy", messages=messages, temperature=second_t
        )
        text = second.choices[0].message.content or ""
        return WorkflowOutput(reward=float(len(text) % 2 == 0))


class RewrittenHistoryWorkflow(Workflow):
    """Two calls where the second rewrites the first user message (as an agent that summarises or truncates its
    context does), so its prompt cannot extend the first call's sequence: a prefix mismatch, every episode."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        query = workflow_task.task.main_query
        first = await client.chat.completions.create(
            model="ajet-policy", messages=[{"role": "user", "content": query}]
        )
        messages = [
            {"role": "user", "content": "(rewritten) " + query},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "user", "content": "again"},
        ]
        second = await client.chat.completions.create(model="ajet-policy", messages=messages)
        text = second.choices[0].message.content or ""
        return WorkflowOutput(reward=float(len(text) % 2 == 0))
