"""Seed 001's `ExampleMathLearn` rendered in AgentScope 2.x: `Agent` for `ReActAgent` (2.x has no `ReActAgent`,
no `agentscope.memory` and no `execute_python_code`; the formatter now belongs to the model, tools are
`FunctionTool`s that need a permission). What the seed teaches is unchanged: `model=model_tuner`, and
`self.toolkit` / `self.agent` set inside `execute`."""

from agentscope.agent import Agent, InjectionConfig, ReActConfig
from agentscope.message import UserMsg
from agentscope.permission import PermissionBehavior, PermissionDecision
from agentscope.tool import FunctionTool, Toolkit
from seed_support import extract_final_answer, system_prompt

from ajet import ModelTuner, Workflow, WorkflowOutput, WorkflowTask

ALLOW = PermissionDecision(behavior=PermissionBehavior.ALLOW, message="allowed in training")


def calculate(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


class ExampleMathLearn(Workflow):
    name: str = "math_agent_workflow"

    async def execute(self, task: WorkflowTask, model_tuner: ModelTuner) -> WorkflowOutput:
        self.toolkit = Toolkit(tools=[FunctionTool(calculate, permission=ALLOW)])
        self.agent = Agent(
            name="math_react_agent",
            system_prompt=system_prompt,
            model=model_tuner,  # ← Key change!
            toolkit=self.toolkit,
            react_config=ReActConfig(max_iters=2),
            injection_config=InjectionConfig(inject_runtime_state=False),  # no clock in the prompt
        )

        query = task.task.main_query
        msg = UserMsg(name="user", content=query)
        result = await self.agent.reply(msg)
        final_answer = extract_final_answer(result)
        return WorkflowOutput(reward=None, metadata={"final_answer": final_answer})
