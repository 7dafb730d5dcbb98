"""A ReAct agent in Strands Agents: `strands.Agent(model=..., tools=[...])` run by `invoke_async`.

Strands' own loop has no turn limit, so a `BeforeModelCallEvent` hook counts the model calls and cancels the
one past `spec.max_turns` (Strands then ends the turn with the cancel text, which is not an answer: "").
A completion cut off by `max_tokens` ends the turn with the cut text as the answer, as in the other frameworks
(the tuner's Strands model reports it as "end_turn" rather than letting Strands raise `MaxTokensReachedException`).
Plain functions become tools through `strands.tool` (Strands silently skips undecorated ones).
"""

from __future__ import annotations

from typing import Any

from ajet.core.react import ReActSpec

_OUT_OF_TURNS = "ajet: out of turns"


def _text(message: dict[str, Any] | None) -> str:
    blocks = (message or {}).get("content") or []
    return "".join(block["text"] for block in blocks if isinstance(block, dict) and "text" in block)


async def run_react(model: Any, spec: ReActSpec) -> str:
    import strands
    from strands.hooks import BeforeModelCallEvent
    from strands.types.exceptions import MaxTokensReachedException

    calls = 0

    def limit_turns(event: BeforeModelCallEvent) -> None:
        nonlocal calls
        calls += 1
        if calls > spec.max_turns:
            event.cancel = _OUT_OF_TURNS

    agent = strands.Agent(
        model=model,  # always given: without one Strands builds a Bedrock model, which reaches AWS
        tools=[strands.tool(fn) for fn in spec.tools],
        system_prompt=spec.system_prompt,
        callback_handler=None,  # no printing to stdout
    )
    agent.add_hook(limit_turns, BeforeModelCallEvent)
    try:
        result = await agent.invoke_async(spec.query)
    except MaxTokensReachedException:  # a native Strands model given as an untrained agent's debug_model
        return _text(agent.messages[-1] if agent.messages else None)
    if calls > spec.max_turns:
        return ""
    return _text(result.message)
