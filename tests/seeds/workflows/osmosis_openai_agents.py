"""Osmosis' "OpenAI Agents Pattern" (seed 003), with only the Osmosis names translated to ajet:
`OsmosisAgent` -> `agents.Agent`, `OsmosisRolloutModel()` -> `tuner.as_openai_agents_model()`,
`OsmosisMemorySession(name=...)` -> the SDK's in-memory `SQLiteSession(...)`, `ctx.prompt` -> the task's prompt
as OpenAI messages (which `Runner.run` takes as they are). `max_tokens` is 16 here (4096 in the seed) so the
tests take seconds on the tiny model."""

from agents import Agent, ModelSettings, Runner, SQLiteSession

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


class SimpleOpenAIWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        prompt = [{"role": "user", "content": workflow_task.task.main_query}]  # Osmosis' ctx.prompt
        agent = Agent(
            name="simple-openai-agent",
            instructions="Answer the user's request clearly.",
            model=tuner.as_openai_agents_model(),
            model_settings=ModelSettings(temperature=1.0, max_tokens=16),
        )
        session = SQLiteSession("simple-openai-agent")
        await Runner.run(
            agent,
            prompt,
            session=session,
        )
        return WorkflowOutput()
