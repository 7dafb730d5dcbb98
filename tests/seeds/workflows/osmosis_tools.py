"""Osmosis' "Tool-Using Workflows" (seed 003): a Strands agent with `@tool(name="search")` and a
`max_iterations` loop. Translated: `AgentWorkflowConfig` -> a pydantic model used as a workflow field (see
osmosis_custom_config.py), `OsmosisStrandsAgent` -> `strands.Agent`, `ctx.prompt` -> `to_strands_messages(...)`.
The seed builds `OsmosisRolloutModel(...)` in the config class body; an ajet model belongs to one episode's tuner,
so the config holds no model by default and `execute` takes it from the tuner."""

from typing import Any

from pydantic import BaseModel
from strands import Agent, tool

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
from ajet.adapters.strands import to_strands_messages


@tool(name="search")
def search_tool(query: str) -> str:
    """Search for information."""
    return f"results for {query}"


class ToolWorkflowConfig(BaseModel):
    name: str = "tool-workflow"
    model: Any = None  # the seed: OsmosisRolloutModel(params={"temperature": 1.0})
    tools: Any = [search_tool]
    max_iterations: int = 8


tool_workflow_config = ToolWorkflowConfig()


class ToolWorkflow(Workflow):
    config: ToolWorkflowConfig | None = None

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        config = self.config or ToolWorkflowConfig()
        agent = Agent(
            name="search-agent",
            model=config.model or tuner.as_strands_model(params={"temperature": 1.0}),
            tools=config.tools,
            messages=to_strands_messages([{"role": "user", "content": workflow_task.task.main_query}]),
            callback_handler=None,
        )

        iterations = 0
        for _ in range(config.max_iterations):
            iterations += 1
            result = await agent.invoke_async()
            content = result.message.get("content", [])
            if not any("toolUse" in block for block in content):
                break
        return WorkflowOutput(metadata={"iterations": iterations})
