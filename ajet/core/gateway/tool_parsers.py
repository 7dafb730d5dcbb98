"""Turn a completion's raw text into OpenAI `content` + `tool_calls`.

A parser never raises on model output: text it cannot read as a tool call stays in `content`, so the agent
sees what the model wrote and the recorded completion is unchanged either way. Plugins register more parsers
through the `register_tool_parsers` hook; these are the built-ins.

A parser that can also say what its tool calls look like as a grammar (`ConstrainingToolParser`) lets the
gateway honour `tool_choice: "required"` and a named function with constrained decoding: the completion is
then one or more well-formed calls whose arguments are valid for the tool's JSON schema.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ajet.core.constraints import Constraint
from ajet.core.gateway.schemas import FunctionTool


@dataclass(slots=True)
class ParsedCompletion:
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class ToolParser(Protocol):
    name: ClassVar[str]

    def parse(self, text: str) -> ParsedCompletion: ...


@runtime_checkable
class ConstrainingToolParser(Protocol):
    """A tool parser that can also constrain decoding to its own tool-call format."""

    name: ClassVar[str]

    def parse(self, text: str) -> ParsedCompletion: ...

    def constraint(self, tools: Sequence[FunctionTool], *, parallel: bool) -> Constraint:
        """A constraint whose completions are one call to one of `tools` (or several, when `parallel`), in
        exactly the markup `parse` reads, each with arguments valid for its tool's parameters schema."""
        ...


def new_tool_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def openai_tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": new_tool_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}


class NoToolParser:
    """Everything the model wrote is content."""

    name: ClassVar[str] = "none"

    def parse(self, text: str) -> ParsedCompletion:
        return ParsedCompletion(content=text, tool_calls=[])


class HermesToolParser:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, as in Hermes, Qwen2.5 and the markup the
    gateway's renderer teaches a template without native tool support.

    Several calls per completion are allowed. The closing tag may be missing at the very end (a stop string or
    the token limit cut it off). A block whose body is not a JSON object with a string `name` is left in the
    content as written.
    """

    name: ClassVar[str] = "hermes"

    OPEN: ClassVar[str] = "<tool_call>"
    CLOSE: ClassVar[str] = "</tool_call>"
    _BLOCK: ClassVar[re.Pattern[str]] = re.compile(
        r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL
    )

    def parse(self, text: str) -> ParsedCompletion:
        if self.OPEN not in text:  # the common case: plain text, returned exactly as generated
            return ParsedCompletion(content=text, tool_calls=[])
        calls: list[dict[str, Any]] = []
        kept: list[str] = []
        position = 0
        for match in self._BLOCK.finditer(text):
            call = _hermes_call(match.group(1))
            if call is None:
                continue  # unreadable: it stays in the content below
            kept.append(text[position : match.start()])
            position = match.end()
            calls.append(call)
        if not calls:
            return ParsedCompletion(content=text, tool_calls=[])
        kept.append(text[position:])
        content = "".join(kept).strip()
        return ParsedCompletion(content=content or None, tool_calls=calls)

    def constraint(self, tools: Sequence[FunctionTool], *, parallel: bool) -> Constraint:
        # The markup the renderer shows the model (and Qwen/Hermes templates use): `<tool_call>`, newline,
        # `{"name": "NAME", "arguments": {...}}` as json.dumps writes it, newline, `</tool_call>`; several
        # calls are separated by a newline. The name is fixed text, so only the arguments are free, within
        # the tool's schema (strict, as vLLM's xgrammar backend: undeclared properties are not allowed).
        tags = [
            {
                "type": "tag",
                "begin": f'{self.OPEN}\n{{"name": {json.dumps(tool.function.name)}, "arguments": ',
                "content": {
                    "type": "json_schema",
                    "json_schema": tool.function.parameters or {"type": "object", "properties": {}},
                    # At most one whitespace character in a row (for engines that take the tag as it is,
                    # e.g. vLLM): free whitespace lets a weak model fill its budget with blanks. The
                    # in-process engine decodes JSON in json.dumps' layout anyway (engines/grammar.py).
                    "max_whitespace_cnt": 1,
                },
                "end": f"}}\n{self.CLOSE}",
            }
            for tool in tools
        ]
        return Constraint.structural_tag(
            {
                "type": "structural_tag",
                "format": {
                    "type": "tags_with_separator",
                    "tags": tags,
                    "separator": "\n",
                    "at_least_one": True,
                    "stop_after_first": not parallel,
                },
            }
        )


def _hermes_call(body: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not payload["name"]:
        return None
    # Models trained on other formats sometimes say "parameters"; both mean the same.
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except ValueError:
            return None
        return openai_tool_call(payload["name"], arguments)
    if not isinstance(arguments, dict):
        return None
    return openai_tool_call(payload["name"], json.dumps(arguments, ensure_ascii=False))


BUILTIN_TOOL_PARSERS: dict[str, type[ToolParser]] = {
    HermesToolParser.name: HermesToolParser,
    NoToolParser.name: NoToolParser,
}
