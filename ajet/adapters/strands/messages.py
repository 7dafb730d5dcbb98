"""OpenAI chat messages -> Strands messages, for `strands.Agent(messages=...)`.

Strands keeps a conversation as `{"role": "user" | "assistant", "content": [content blocks]}`, with the system
prompt apart (`Agent(system_prompt=...)`); an OpenAI-style `{"role": "user", "content": "text"}` is accepted by
`Agent(...)` but fails on the first model call with `TypeError: content_type=<...> | unsupported type`. Code
written for a runner that hands over OpenAI messages (Osmosis' `messages=ctx.prompt`) converts them here.
Imports nothing from Strands, so the plugin stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

_HOW = "from ajet.adapters.strands import to_strands_messages; Agent(messages=to_strands_messages(messages))"


def to_strands_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Strands messages for OpenAI chat `messages` (user, assistant with `tool_calls`, tool). Text content may be
    a string or a list of `{"type": "text"}` parts; messages already in Strands' form are kept as they are. A
    system message raises ValueError: give it to `Agent(system_prompt=...)` instead."""
    converted: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            raise ValueError(
                f"messages[{index}] is a system message; Strands takes the system prompt apart: pass "
                "Agent(system_prompt=<its content>) and the other messages to to_strands_messages"
            )
        if role == "tool":
            result = {
                "toolResult": {
                    "toolUseId": message["tool_call_id"],
                    "status": "success",
                    "content": [{"text": _text(message.get("content"), index)}],
                }
            }
            previous = converted[-1] if converted else None
            if (
                previous
                and previous["role"] == "user"
                and all("toolResult" in b for b in previous["content"])
            ):
                previous["content"].append(result)  # Strands wants one turn's tool results in one message
            else:
                converted.append({"role": "user", "content": [result]})
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{index}] has role {role!r}; expected system, user, assistant or tool")
        content = message.get("content")
        if _is_strands_content(content):
            blocks = [dict(block) for block in content]
        else:
            text = _text(content, index)
            blocks = [{"text": text}] if text or not message.get("tool_calls") else []
        for call in message.get("tool_calls") or []:
            function = call["function"]
            arguments = function.get("arguments") or "{}"
            blocks.append(
                {
                    "toolUse": {
                        "toolUseId": call["id"],
                        "name": function["name"],
                        "input": json.loads(arguments) if isinstance(arguments, str) else arguments,
                    }
                }
            )
        converted.append({"role": role, "content": blocks})
    return converted


def check_strands_messages(messages: Iterable[Mapping[str, Any]]) -> None:
    """Raise a ValueError naming `to_strands_messages` when a message is not in Strands' form (the check the
    tuner's Strands model runs before each request)."""
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise ValueError(
                f"Strands agent messages[{index}] has role {role!r}; Strands messages are user or assistant "
                f"(the system prompt goes to Agent(system_prompt=...)). For OpenAI-style messages: {_HOW}"
            )
        if not _is_strands_content(content):
            raise ValueError(
                f"Strands agent messages[{index}] is an OpenAI-style message (content {type(content).__name__}); "
                f"Strands wants content as a list of blocks like [{{'text': ...}}]. Convert them: {_HOW}"
            )


def _is_strands_content(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(block, Mapping) and "type" not in block for block in content
    )


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        return "".join(part["text"] for part in content)
    raise ValueError(
        f"messages[{index}]: only text content converts to Strands (a string or text parts); got {content!r:.80}"
    )
