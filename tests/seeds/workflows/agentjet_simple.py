"""Seed 000 (AgentJet "Trainable Workflow"), Simple Practice, on AgentScope 1.x: the "After" agent
(`model = tuner.as_agentscope_model()`, `ReActAgent(..., formatter=DashScopeChatFormatter())`) inside the seed's
`MyWorkflow`. The seed's `...` are filled in with the least code that runs: ask the question, return the reply
for the config's judger."""
# ruff: noqa: F541 - the seed's code, as written

from agentscope.agent import ReActAgent
from agentscope.formatter import DashScopeChatFormatter
from agentscope.message import Msg

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


# fmt: off
class MyWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_agentscope_model() # ✈️ change here
        agent_instance = ReActAgent(
           name=f"Friday",
           sys_prompt="You are a helpful assistant",
           model=model,
           formatter=DashScopeChatFormatter(),
        )
        reply = await agent_instance(Msg("user", workflow_task.task.main_query, "user"))
        return WorkflowOutput(reward=None, metadata={"answer": reply.get_text_content() or ""})
# fmt: on
