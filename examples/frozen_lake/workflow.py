"""FrozenLake driven by an OpenAI SDK tool loop: the model calls `move(direction)`, the observation comes back
as the tool result, up to `max_turns` model calls.

Plain OpenAI SDK code; the ajet lines are `tuner.as_raw_openai_sdk_client()` and the returned `WorkflowOutput`.
A reply without a tool call ends the episode (the agent stopped moving). Every other mistake a weak model makes
(arguments that are not JSON, an unknown direction or tool) is answered with an observation that says what went
wrong, and the episode goes on until the lake says it is over or the turns run out.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from frozen_lake_env import FrozenLake, StepResult

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask

MOVE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "move",
        "description": "Move one tile on the frozen lake.",
        "parameters": {
            "type": "object",
            "properties": {"direction": {"type": "string", "enum": ["left", "right", "up", "down"]}},
            "required": ["direction"],
        },
    },
}

SYSTEM_PROMPT = (
    "You are on a frozen lake grid. P is you, G is the goal, H is a hole, F is safe ice, S is the start. "
    "Row 0 is the top, column 0 the left. Reach G without stepping on H. "
    "Call the move tool with direction left, right, up or down, one move per call."
)


def run_tool_call(lake: FrozenLake, name: str, arguments: str) -> StepResult:
    """Apply one tool call to the lake; a call that is not a valid move is answered, never raised."""
    if name != "move":
        return StepResult(f"Unknown tool {name!r}; the only tool is move.\n{lake.describe()}", 0.0, lake.done)
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return StepResult(f"The arguments are not JSON: {arguments!r}.\n{lake.describe()}", 0.0, lake.done)
    direction = args.get("direction") if isinstance(args, dict) else None
    if not isinstance(direction, str):
        return StepResult(
            f'move needs {{"direction": "left" | "right" | "up" | "down"}}, got {arguments!r}.\n'
            f"{lake.describe()}",
            0.0,
            lake.done,
        )
    return lake.step(direction)


class FrozenLakeWorkflow(Workflow):
    max_turns: int = 4  # model calls per episode
    slippery: bool = False
    model: str = "ajet-policy"

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        # slips are seeded by task and repeat: the episodes of a group slip differently, reruns the same way
        slip_seed = zlib.crc32(f"{workflow_task.task.task_id}#{workflow_task.repeat_index}".encode())
        lake = FrozenLake(workflow_task.task.metadata["map"], slippery=self.slippery, seed=slip_seed)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": workflow_task.task.main_query},
        ]
        for _ in range(self.max_turns):
            response = await client.chat.completions.create(
                model=self.model, messages=messages, tools=[MOVE_TOOL]
            )
            message = response.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            if not message.tool_calls:
                break  # the agent answered instead of moving: its episode is over, as in any tool loop
            for call in message.tool_calls:
                result = run_tool_call(lake, call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result.observation})
            if lake.done:
                break
        return WorkflowOutput(
            reward=lake.reward,
            is_success=lake.reward == 1.0,
            metadata={
                "outcome": outcome(lake),
                "moves": lake.moves,
                "turns": sum(m["role"] == "assistant" for m in messages),
            },
        )


def outcome(lake: FrozenLake) -> str:
    if lake.reward == 1.0:
        return "goal"
    return "hole" if lake.done else "stopped"  # no tool call, or out of turns
