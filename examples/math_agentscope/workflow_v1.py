"""The math agent in AgentScope 1.x: a `ReActAgent` with a calculator tool, asked for a structured answer.

This is the AgentScope 1.x code a user already has; the only ajet line is `model=tuner.as_agentscope_model()`
(it was `model=OpenAIChatModel(...)` or `DashScopeChatModel(...)`). The workflow returns the answer and the
config's judger (`numeric_match`) scores it against the task's label, which the workflow never sees.
"""

from __future__ import annotations

from typing import Literal

from agentscope.agent import ReActAgent
from agentscope.formatter import DashScopeChatFormatter, OpenAIChatFormatter
from agentscope.memory import InMemoryMemory
from agentscope.message import Msg, TextBlock
from agentscope.tool import Toolkit, ToolResponse
from math_word_problems import calculator_text
from pydantic import BaseModel, Field

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

SYSTEM_PROMPT = (
    "You are a careful math assistant. Use the calculator tool for arithmetic, then give the final answer "
    "as a number."
)


class FinalAnswer(BaseModel):
    answer: float = Field(description="the final answer, a number")


def calculator(expression: str) -> ToolResponse:
    """Evaluate an arithmetic expression with + - * / and parentheses.

    Args:
        expression (str): for example 12 * (3 + 4)
    """
    return ToolResponse(content=[TextBlock(type="text", text=calculator_text(expression))])


class MathAgent(Workflow):
    #: reasoning-acting rounds before ReActAgent gives up on the structured answer and summarizes in text
    max_iters: int = Field(2, ge=1)
    #: both 1.x formatters work: for text, DashScope's writes OpenAI-compatible messages too
    formatter: Literal["openai", "dashscope"] = "openai"
    #: ask for the `FinalAnswer` structured output (a tool call the agent must make), or take the text reply
    structured_output: bool = True

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        toolkit = Toolkit()
        toolkit.register_tool_function(calculator)
        agent = ReActAgent(
            name="math",
            sys_prompt=SYSTEM_PROMPT,
            model=tuner.as_agentscope_model(),
            formatter=OpenAIChatFormatter() if self.formatter == "openai" else DashScopeChatFormatter(),
            toolkit=toolkit,
            memory=InMemoryMemory(),
            max_iters=self.max_iters,
        )
        agent.set_console_output_enabled(False)  # many episodes run at once: keep the console quiet
        question = Msg("user", workflow_task.task.main_query, "user")
        msg = await agent.reply(question, structured_model=FinalAnswer if self.structured_output else None)

        text = msg.get_text_content() or ""
        structured = msg.metadata or {}
        history = await agent.memory.get_memory()
        tool_calls = [
            b for m in history for b in m.get_content_blocks("tool_use") if b["name"] == "calculator"
        ]
        # the structured answer when the model gave one, else its text reply (the judger takes its last number)
        return WorkflowOutput(
            reward=None,
            metadata={
                "answer": structured.get("answer", text),
                "reply": text,
                "structured": "answer" in structured,
                "tool_calls": len(tool_calls),
            },
        )
