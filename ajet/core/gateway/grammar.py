"""Which constraint a chat request puts on its completion, as OpenAI and vLLM promise it.

- `tool_choice: "required"`: at least one call (one, with `parallel_tool_calls: false`) to one of the tools;
  a named function (`{"type": "function", "function": {"name": ...}}`): exactly one call to that tool. The
  format is the tool parser's own (`ConstrainingToolParser.constraint`), so the gateway parses what the engine
  wrote into `tool_calls`, with arguments valid for the tool's schema, and answers `finish_reason:
  "tool_calls"`.
- `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}`: one JSON value valid for the
  schema; `{"type": "json_object"}` (or a json_schema without a schema): one JSON object.

A forced tool call wins over `response_format` (OpenAI: the model must call the tool). `tool_choice: "auto"`
constrains nothing: the model chooses, and the parser reads what it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from ajet.core.constraints import Constraint
from ajet.core.gateway.schemas import (
    ChatCompletionRequest,
    GatewayError,
    JsonObjectResponseFormat,
    JsonSchemaResponseFormat,
    NamedToolChoice,
)
from ajet.core.gateway.tool_parsers import ConstrainingToolParser, ToolParser


@dataclass(frozen=True, slots=True)
class RequestConstraint:
    constraint: Constraint
    #: the request field it comes from, named in a 400 when it cannot be compiled
    param: str


def request_constraint(request: ChatCompletionRequest, parser: ToolParser) -> RequestConstraint | None:
    """The request's constraint, or None when it leaves the model free."""
    choice = request.tool_choice
    if request.tools and (choice == "required" or isinstance(choice, NamedToolChoice)):
        if not isinstance(parser, ConstrainingToolParser):
            raise GatewayError(
                400,
                f"tool_choice {_describe(choice)} needs the completion constrained to a tool-call format, "
                f"and the gateway's tool parser {parser.name!r} has none; use a tool parser that has one "
                "(gateway.tool_parser: hermes)",
                param="tool_choice",
                code="unsupported_tool_choice",
            )
        if isinstance(choice, NamedToolChoice):
            tools = [t for t in request.tools if t.function.name == choice.function.name]
            return RequestConstraint(parser.constraint(tools, parallel=False), "tools")
        parallel = request.parallel_tool_calls is not False  # OpenAI's default: parallel calls allowed
        return RequestConstraint(parser.constraint(request.tools, parallel=parallel), "tools")
    response_format = request.response_format
    if isinstance(response_format, JsonSchemaResponseFormat):
        schema = response_format.json_schema.schema_
        constraint = Constraint.json_object() if schema is None else Constraint.json_schema(schema)
        return RequestConstraint(constraint, "response_format.json_schema.schema")
    if isinstance(response_format, JsonObjectResponseFormat):
        return RequestConstraint(Constraint.json_object(), "response_format")
    return None


def _describe(choice: object) -> str:
    if isinstance(choice, NamedToolChoice):
        return f"naming function {choice.function.name!r}"
    return repr(choice)
