"""A Pydantic AI agent with a calculator tool, trained by ajet through the `ajet-pydantic-ai` plugin.

The agent code is plain Pydantic AI. The only ajet lines are the model (`tuner.as_pydantic_ai_model()`, a method
the plugin adds to the tuner) and the returned `WorkflowOutput`. The reward comes from the config's judger
(`numeric_match` on `metadata["reply"]`), so the workflow never sees the answer.
"""

from __future__ import annotations

import ast
import operator

from pydantic_ai import Agent
from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.usage import UsageLimits

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

INSTRUCTIONS = (
    "You are a careful math assistant. You may use the calculator tool. "
    "End your reply with the final answer as a number."
)

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses.

    Args:
        expression: for example 12 * (3 + 4)
    """

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -evaluate(node.operand)
        raise ValueError(f"unsupported expression: {expression!r}")

    try:
        value = evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"  # the model's mistake: tell it, as a tool result, instead of ending the run
    return str(int(value) if float(value).is_integer() else round(value, 6))


class CalculatorAgent(Workflow):
    #: model requests per episode (set it with `workflow.args` in the config)
    max_requests: int = 3

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        agent = Agent(tuner.as_pydantic_ai_model(), instructions=INSTRUCTIONS, tools=[calculator])
        try:
            result = await agent.run(
                workflow_task.task.main_query, usage_limits=UsageLimits(request_limit=self.max_requests)
            )
        except (UnexpectedModelBehavior, UsageLimitExceeded) as exc:
            # Malformed tool calls past Pydantic AI's retries, or more than max_requests requests: the policy's
            # fault, so a zero reward to learn from, not a failed episode. The calls made so far are recorded.
            return WorkflowOutput(reward=0.0, is_success=False, metadata={"reply": "", "error": str(exc)})
        tool_calls = sum(
            1 for message in result.all_messages() for part in message.parts if part.part_kind == "tool-call"
        )
        return WorkflowOutput(reward=None, metadata={"reply": result.output, "tool_calls": tool_calls})
