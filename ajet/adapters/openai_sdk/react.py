"""A ReAct agent with the raw OpenAI SDK: the plain tool loop that every other framework wraps.

    answer = await run_react(tuner.as_raw_openai_sdk_client(), ReActSpec(system_prompt=..., query=..., tools=(add,)))

Tools are described from their signature (pydantic builds the JSON schema from the type hints) and docstring
(the first paragraph; parameter descriptions from a Google-style `Args:` section). A tool that fails, or a call
with bad arguments, answers "error: ..." to the model instead of ending the episode, as the frameworks do.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ValidationError, create_model

from ajet.core.react import ReActSpec, tool_description

_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def argument_descriptions(fn: Callable[..., Any]) -> dict[str, str]:
    """`name: text` lines of a Google-style `Args:` section (continuation lines are not joined)."""
    doc = inspect.getdoc(fn) or ""
    _, found, section = doc.partition("Args:")
    if not found:
        return {}
    described: dict[str, str] = {}
    for line in section.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section (Returns:, Raises:, ...)
        match = _ARG_LINE.match(line)
        if match:
            described[match.group(1)] = match.group(2).strip()
    return described


def arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the function's parameters: it makes the JSON schema and checks the model's call."""
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"tool {fn.__name__!r}: *args and **kwargs cannot be described to the model")
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(fn.__name__, **fields)


def openai_tool(fn: Callable[..., Any]) -> dict[str, Any]:
    """The Chat Completions tool definition of a plain function."""
    schema = arguments_model(fn).model_json_schema()
    schema.pop("title", None)
    descriptions = argument_descriptions(fn)
    for name, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        if name in descriptions:
            prop["description"] = descriptions[name]
    function = {"name": fn.__name__, "description": tool_description(fn), "parameters": schema}
    return {"type": "function", "function": function}


async def call_tool(fn: Callable[..., Any], arguments: str) -> str:
    """Run one tool call and give its result as text (errors too: the model may correct itself)."""
    try:
        parsed = arguments_model(fn).model_validate_json(arguments or "{}")
        result = fn(**{name: getattr(parsed, name) for name in type(parsed).model_fields})
        if inspect.isawaitable(result):
            result = await result
    except ValidationError as exc:
        return f"error: bad arguments for {fn.__name__}: {exc.errors(include_url=False)}"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return result if isinstance(result, str) else json.dumps(result, default=str)


async def run_react(client: Any, spec: ReActSpec) -> str:
    """Call the model, run the tools it asks for, feed their results back; stop at an answer without tool calls
    or after `spec.max_turns` calls (then the answer is "")."""
    tools = {fn.__name__: fn for fn in spec.tools}
    extra: dict[str, Any] = {"tools": [openai_tool(fn) for fn in spec.tools]} if spec.tools else {}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.system_prompt},
        {"role": "user", "content": spec.query},
    ]
    for _ in range(spec.max_turns):
        response = await client.chat.completions.create(model=spec.model_name, messages=messages, **extra)
        message = response.choices[0].message
        if not message.tool_calls:
            return message.content or ""
        calls = [call.model_dump(include={"id", "type", "function"}) for call in message.tool_calls]
        messages.append({"role": "assistant", "content": message.content, "tool_calls": calls})
        for call in message.tool_calls:
            fn = tools.get(call.function.name)
            result = (
                await call_tool(fn, call.function.arguments)
                if fn is not None
                else f"error: no tool named {call.function.name!r}; tools: {', '.join(tools)}"
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return ""
