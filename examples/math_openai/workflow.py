"""A tool-calling ReAct loop written with the raw OpenAI SDK: the agent may call a calculator, then answers.

Nothing here is ajet-specific except two lines: the client comes from `tuner.as_raw_openai_sdk_client()` and the
loop returns a `WorkflowOutput` with the reward.
"""

from __future__ import annotations

import ast
import json
import operator
import re

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

CALCULATOR_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression with + - * / and parentheses.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "for example: 12 * (3 + 4)"}},
            "required": ["expression"],
        },
    },
}

SYSTEM_PROMPT = (
    "You are a careful math assistant. You may use the calculator tool. "
    "End your reply with the final answer as a number."
)

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculate(expression: str) -> float:
    """Evaluate + - * / arithmetic safely (no names, no calls)."""

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -evaluate(node.operand)
        raise ValueError(f"unsupported expression: {expression!r}")

    return evaluate(ast.parse(expression, mode="eval").body)


def run_tool(name: str, arguments: str) -> str:
    try:
        if name != "calculator":
            return f"error: unknown tool {name!r}"
        value = calculate(json.loads(arguments)["expression"])
        return str(int(value) if float(value).is_integer() else round(value, 6))
    except (
        Exception
    ) as exc:  # a bad tool call is the agent's mistake: report it back, don't crash the episode
        return f"error: {exc}"


def last_number(text: str) -> float | None:
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


class MathWorkflow(Workflow):
    max_turns: int = 3
    model: str = "ajet-policy"

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        messages: list[dict] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": workflow_task.task.main_query},
        ]
        tool_calls_made = 0
        reply = ""
        for _ in range(self.max_turns):
            response = await client.chat.completions.create(
                model=self.model, messages=messages, tools=[CALCULATOR_TOOL]
            )
            message = response.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            reply = message.content or ""
            if not message.tool_calls:
                break
            for call in message.tool_calls:
                tool_calls_made += 1
                result = run_tool(call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

        expected = calculate(workflow_task.task.metadata["expression"])
        answer = last_number(reply)
        correct = answer is not None and abs(answer - expected) < 1e-6
        return WorkflowOutput(
            reward=1.0 if correct else 0.0,
            is_success=correct,
            metadata={"answer": answer, "tool_calls": tool_calls_made, "turns": len(messages) // 2},
        )
