"""A ReAct agent in the OpenAI Agents SDK: `Agent` with the functions as `function_tool`s, run by `Runner.run`.

`Runner.run(max_turns=...)` counts model calls, as `spec.max_turns` does; a run out of turns raises
`MaxTurnsExceeded`, and answers "". Trace export is already off (the adapter's model factory sees to it).
"""

from __future__ import annotations

from typing import Any

from ajet.core.react import ReActSpec


async def run_react(model: Any, spec: ReActSpec) -> str:
    from agents import Agent, MaxTurnsExceeded, Runner, function_tool

    agent = Agent(
        name=spec.agent_name,
        instructions=spec.system_prompt,
        model=model,
        tools=[function_tool(fn) for fn in spec.tools],
    )
    try:
        result = await Runner.run(agent, spec.query, max_turns=spec.max_turns)
    except MaxTurnsExceeded:
        return ""
    return "" if result.final_output is None else str(result.final_output)
