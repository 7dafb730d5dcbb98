"""Osmosis' "Custom Configuration" (seed 003). Osmosis passes a module-level `AgentWorkflowConfig` instance as
`ctx.config`; in ajet a workflow's settings are its pydantic fields, set from the YAML's `workflow.args`, so the
config object becomes a field (`workflow.args: {config: {max_iterations: 3}}`) and `ctx.config` becomes
`self.config`. `concurrency` has no per-workflow form in ajet: it is `rollout.max_concurrency` in the YAML.
The module-level instance is kept as the seed writes it; ajet does not read it."""

from pydantic import BaseModel
from strands import Agent

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
from ajet.adapters.strands import to_strands_messages


class SearchWorkflowConfig(BaseModel):
    name: str = "search-workflow"
    max_iterations: int = 8
    temperature: float = 1.0


class SearchWorkflow(Workflow):
    config: SearchWorkflowConfig | None = None

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        config = self.config or SearchWorkflowConfig()
        max_iterations = config.max_iterations
        temperature = config.temperature
        # Use these values when constructing your agent.
        agent = Agent(
            name=config.name,
            model=tuner.as_strands_model(params={"temperature": temperature}),
            messages=to_strands_messages([{"role": "user", "content": workflow_task.task.main_query}]),
            callback_handler=None,
        )
        for _ in range(max_iterations):
            result = await agent.invoke_async()
            if result.stop_reason == "end_turn":
                break
        return WorkflowOutput(metadata={"max_iterations": max_iterations, "temperature": temperature})


search_workflow_config = SearchWorkflowConfig()
