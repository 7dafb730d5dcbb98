"""Osmosis' "Strands Pattern" (seed 003), with only the Osmosis names translated to ajet:
`AgentWorkflow.run(ctx)` -> `Workflow.execute(workflow_task, tuner)`, `OsmosisStrandsAgent` -> `strands.Agent`,
`OsmosisRolloutModel(...)` -> `tuner.as_strands_model(...)`, and `ctx.prompt` (OpenAI messages) -> the task's
prompt as OpenAI messages, converted with `to_strands_messages` (Strands wants its own message form).
The workflow returns no reward: the grader (judger) scores the conversation, as an Osmosis grader does."""

from strands import Agent

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
from ajet.adapters.strands import to_strands_messages


class SimpleStrandsWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        prompt = [{"role": "user", "content": workflow_task.task.main_query}]  # Osmosis' ctx.prompt
        agent = Agent(
            name="simple-strands-agent",
            model=tuner.as_strands_model(params={"temperature": 1.0}),
            messages=to_strands_messages(prompt),
            callback_handler=None,
        )
        await agent.invoke_async()
        return WorkflowOutput()
