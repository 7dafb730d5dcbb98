"""The math agent in AgentScope 2.x: an `Agent` with a calculator tool, asked for a structured answer.

The AgentScope 2.x code a user already has; the only ajet line is `model=tuner.as_agentscope_model()` (it was
`model=OpenAIChatModel(...)`). The workflow returns the answer and the config's judger (`numeric_match`) scores
it against the task's label, which the workflow never sees. For AgentScope 1.x see `workflow_v1.py`.
"""

from __future__ import annotations

from agentscope.agent import Agent, InjectionConfig, ReActConfig
from agentscope.message import UserMsg
from agentscope.permission import PermissionBehavior, PermissionDecision
from agentscope.tool import FunctionTool, Toolkit
from math_word_problems import calculator_text
from pydantic import BaseModel, Field

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

SYSTEM_PROMPT = (
    "You are a careful math assistant. Use the calculator tool for arithmetic, then give the final answer "
    "as a number."
)


class FinalAnswer(BaseModel):
    answer: float = Field(description="the final answer, a number")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses.

    Args:
        expression: for example 12 * (3 + 4)
    """
    return calculator_text(expression)


class MathAgent(Workflow):
    #: reasoning-acting rounds; then one grace round in which the agent must give the structured answer
    max_iters: int = Field(1, ge=1)
    #: ask for the `FinalAnswer` structured output (a tool call the agent must make), or take the text reply
    structured_output: bool = True

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        # The calculator runs without asking (a FunctionTool asks the user by default, and no one is there), and
        # the current time is not injected into the prompt (it would make prompts differ between runs).
        allow = PermissionDecision(behavior=PermissionBehavior.ALLOW, message="the calculator is safe")
        agent = Agent(
            name="math",
            system_prompt=SYSTEM_PROMPT,
            model=tuner.as_agentscope_model(),
            toolkit=Toolkit(tools=[FunctionTool(calculator, permission=allow)]),
            react_config=ReActConfig(max_iters=self.max_iters, structured_output_grace_iters=1),
            injection_config=InjectionConfig(inject_runtime_state=False),
        )
        msg = await agent.reply(
            UserMsg(name="user", content=workflow_task.task.main_query),
            structured_schema=FinalAnswer if self.structured_output else None,
        )

        structured = msg.structured_output or {}
        replies = [m for m in agent.state.context if m.role == "assistant"]
        # Without the structured answer the reply says only that the iterations ran out: judge the model's last
        # own text instead (the judger takes its last number).
        texts = [m.get_text_content() for m in replies if m.get_text_content()]
        text = texts[-1] if texts else ""
        tool_calls = [b for m in replies for b in m.get_content_blocks("tool_call") if b.name == "calculator"]
        return WorkflowOutput(
            reward=None,
            metadata={
                "answer": structured.get("answer", text),
                "reply": text,
                "structured": "answer" in structured,
                "tool_calls": len(tool_calls),
            },
        )
