"""Countdown with a LangChain agent: `create_agent` with an `evaluate` tool, the model taken from the tuner.

The agent code is plain LangChain; the ajet lines are `tuner.as_langchain_model()` and the returned
`WorkflowOutput`. The reward is computed from the agent's final reply by `countdown_game.score` (see the README).
"""

from __future__ import annotations

from typing import Any

from countdown_game import describe, extract_expression, score
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool, tool
from langgraph.errors import GraphRecursionError

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

SYSTEM_PROMPT = (
    "You play Countdown. Combine some of the given numbers with + - * / and parentheses to reach the target. "
    "Use each number at most once. You may check an expression with the evaluate tool. "
    "End with the final expression inside <answer></answer>, for example <answer>(3 + 5) * 2</answer>."
)


def make_evaluate_tool(numbers: list[int], target: int, log: list[str]) -> BaseTool:
    """The `evaluate` tool for one puzzle; every expression the agent tries is appended to `log`."""

    @tool(parse_docstring=True)
    def evaluate(expression: str) -> str:
        """Evaluate an arithmetic expression with + - * / and parentheses, and say which numbers it uses.

        Args:
            expression: for example (3 + 5) * 2
        """
        log.append(expression)
        return describe(expression, numbers, target)

    return evaluate


class CountdownWorkflow(Workflow):
    # model calls per episode: create_agent spends one graph step on each model call and one on each round of
    # tool calls, so the graph is allowed 2 * max_turns steps
    max_turns: int = 3

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        numbers: list[int] = list(workflow_task.task.metadata["numbers"])
        target: int = int(workflow_task.task.metadata["target"])
        tried: list[str] = []
        agent = create_agent(
            tuner.as_langchain_model(),
            tools=[make_evaluate_tool(numbers, target, tried)],
            system_prompt=SYSTEM_PROMPT,
        )
        messages = await run_agent(agent, workflow_task.task.main_query, 2 * self.max_turns)
        reply = final_reply(messages)
        expression = extract_expression(reply)
        reward = score(expression, numbers, target)
        return WorkflowOutput(
            reward=reward,
            is_success=reward == 1.0,
            metadata={"expression": expression, "reply": reply, "tool_calls": len(tried), "tried": tried},
        )


async def run_agent(agent: Any, query: str, recursion_limit: int) -> list[BaseMessage]:
    """The conversation the agent produced. When it keeps calling tools past the step limit the episode ends
    there (LangGraph raises GraphRecursionError), with the messages streamed so far."""
    messages: list[BaseMessage] = []
    try:
        async for state in agent.astream(
            {"messages": [{"role": "user", "content": query}]},
            config={"recursion_limit": recursion_limit},
            stream_mode="values",
        ):
            messages = state["messages"]
    except GraphRecursionError:
        pass
    return messages


def final_reply(messages: list[BaseMessage]) -> str:
    """The text of the model's last message (the final answer, or its last words when the step limit cut the
    episode short after a tool call)."""
    replies = [m for m in messages if isinstance(m, AIMessage)]
    return replies[-1].text if replies else ""
