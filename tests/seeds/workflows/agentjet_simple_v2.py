"""Seed 000's Simple Practice rendered in AgentScope 2.x: `Agent` for `ReActAgent` (the formatter now belongs to
the model, so `DashScopeChatFormatter()` goes to `as_agentscope_model(formatter=...)`). The seed's point is
unchanged: the agent's model is `tuner.as_agentscope_model()`."""

from agentscope.agent import Agent, InjectionConfig
from agentscope.formatter import DashScopeChatFormatter
from agentscope.message import UserMsg

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask


class MyWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_agentscope_model(formatter=DashScopeChatFormatter())  # ✈️ change here
        agent_instance = Agent(
            name="Friday",
            system_prompt="You are a helpful assistant",
            model=model,
            injection_config=InjectionConfig(inject_runtime_state=False),  # no clock in the prompt
        )
        reply = await agent_instance.reply(UserMsg(name="user", content=workflow_task.task.main_query))
        return WorkflowOutput(reward=None, metadata={"answer": reply.get_text_content() or ""})
