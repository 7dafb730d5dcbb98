"""The OpenAI Chat Completions wire format, as the gateway accepts and answers it.

Requests are validated with pydantic so that a malformed one gets a 400 naming the field, never a crash.
Unknown keys are accepted and ignored everywhere: frameworks send many (`user`, `metadata`, `store`,
`extra_body` merges, ...). Responses are built as plain dicts: they are serialized once with `json.dumps`, and
building pydantic models only to dump them again would cost time on every call.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

# ------------------------------------------------------------------------------------------------------------
# errors


class GatewayError(Exception):
    """An error answered with an OpenAI-style body: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)


def error_body(
    message: str, *, type: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_error_to_gateway_error(exc: ValidationError) -> GatewayError:
    """A validation error as a 400 whose message starts with the field path (`messages.1.content`)."""
    errors = exc.errors(include_url=False)
    # For a union (`content: str | list[part]`) pydantic reports every branch; the deepest error is the one
    # inside the branch the client meant (a bad part in a list), not "should be a valid string".
    first = max(errors, key=lambda e: len(e["loc"]))
    if not first["loc"] and first["type"] == "model_type":
        return GatewayError(400, "request body must be a JSON object", code="invalid_value")
    path = ".".join(str(part) for part in first["loc"] if not _is_branch_label(part)) or "body"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return GatewayError(400, f"{path}: {first['msg']}{more}", code="invalid_value", param=path)


_BRANCH_LABELS = {"str", "int", "float", "bool", "dict", "list", "none"}


def _is_branch_label(part: str | int) -> bool:
    # pydantic names union branches in the location (`content.str`, `tool_choice.literal['auto',...]`).
    return isinstance(part, str) and (part in _BRANCH_LABELS or "[" in part)


# ------------------------------------------------------------------------------------------------------------
# request


class _Lenient(BaseModel):
    # Frameworks add keys of their own (`name`, `refusal`, `annotations`, `cache_control`, ...): ignore them.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class RefusalPart(_Lenient):
    # An assistant message echoed back may carry its refusal as a part; it is not text the model saw.
    type: Literal["refusal"]


class MediaPart(_Lenient):
    # Listed only so the error says clearly that the policy is text-only, instead of "tag not expected".
    type: Literal["image_url", "input_audio", "file", "input_image"]

    @model_validator(mode="after")
    def _unsupported(self) -> MediaPart:
        raise ValueError(
            f"content parts of type {self.type!r} are not supported: the gateway serves text only"
        )


ContentPart = Annotated[TextPart | RefusalPart | MediaPart, Field(discriminator="type")]
Content = str | list[ContentPart]


def content_text(content: Content | None) -> str:
    """Content as plain text: text parts joined without separators (as OpenAI concatenates them)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


class FunctionCall(_Lenient):
    name: str
    # OpenAI sends a JSON string; some frameworks send the object. Both are accepted; it is kept as a string.
    arguments: str | dict[str, Any] = "{}"

    @field_validator("arguments", mode="after")
    @classmethod
    def _as_string(cls, value: str | dict[str, Any]) -> str:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Lenient):
    role: Literal["system"]
    content: Content
    name: str | None = None


class DeveloperMessage(_Lenient):
    role: Literal["developer"]
    content: Content
    name: str | None = None


class UserMessage(_Lenient):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(_Lenient):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None


class ToolMessage(_Lenient):
    role: Literal["tool"]
    content: Content
    tool_call_id: str
    name: str | None = None


ChatMessage = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class TextResponseFormat(_Lenient):
    type: Literal["text"]


class JsonObjectResponseFormat(_Lenient):
    type: Literal["json_object"]


class JsonSchemaSpec(_Lenient):
    # `schema` as the wire name (it would shadow a BaseModel attribute as a field name)
    model_config = ConfigDict(extra="ignore", validate_by_name=True, serialize_by_alias=True)

    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JsonSchemaResponseFormat(_Lenient):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


#: `response_format`: the policy engine decodes under it (constrained decoding), see `gateway.grammar`
ResponseFormat = Annotated[
    TextResponseFormat | JsonObjectResponseFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


# Numbers and flags are strict, as OpenAI's API is: `"max_tokens": "10"` or `"stream": "no"` is a client bug to
# report (400), not a value to guess at. Floats accept integers (`"temperature": 1`); the seed is an int64.
_INT64 = 2**63


class ChatCompletionRequest(_Lenient):
    """`POST /v1/chat/completions`. Only `messages` is required (`model` is ignored: one model is served)."""

    # The gateway sets it when max_tokens is filled in from the episode's sampling defaults (see limits.py).
    _max_tokens_is_default: bool = PrivateAttr(False)

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(None, ge=0.0, le=1.0)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(None, ge=-_INT64, lt=_INT64)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    n: StrictInt = 1
    response_format: ResponseFormat | None = None

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported; send n separate requests instead")
        return value

    @field_validator("stop", mode="after")
    @classmethod
    def _non_empty_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return value

    @model_validator(mode="after")
    def _named_tool_exists(self) -> ChatCompletionRequest:
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice is 'required' but the request has no tools; send tools or drop it")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names function {self.tool_choice.function.name!r}, which is not in tools"
                )
        return self

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def requested_max_tokens(self) -> int | None:
        # max_completion_tokens is the newer name; OpenAI gives it precedence when both are sent.
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def explicit_max_tokens(self) -> int | None:
        """The completion limit the client asked for; None when it sent none or it is an episode default."""
        return None if self._max_tokens_is_default else self.requested_max_tokens

    def with_default_max_tokens(self, max_tokens: int) -> ChatCompletionRequest:
        """A copy whose max_tokens is a default (the episode's): clamped to the context, never refused."""
        copy = self.model_copy(update={"max_tokens": max_tokens})
        copy._max_tokens_is_default = True
        return copy

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


# ------------------------------------------------------------------------------------------------------------
# response builders


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def logprobs_block(tokens: list[str], logprobs: list[float]) -> dict[str, Any]:
    """The `choices[0].logprobs` block. The engine samples without keeping alternatives, so `top_logprobs` is
    always empty."""
    return {
        "content": [
            {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8")), "top_logprobs": []}
            for token, lp in zip(tokens, logprobs, strict=True)
        ],
        "refusal": None,
    }


def completion_body(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage_block: dict[str, int] | None,
    logprobs: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": usage_block,
    }


def stream_chunks(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage_block: dict[str, int] | None,
    logprobs: dict[str, Any] | None,
    include_usage: bool,
) -> list[dict[str, Any]]:
    """The whole completion as `chat.completion.chunk`s, in the order OpenAI sends them.

    The engine produces the completion in one piece, so there is one content delta; tool calls come as OpenAI
    sends them (a first delta with index, id and name, then one with the arguments), which is what every
    framework's stream accumulator expects. The log-probs ride on the first delta that carries output.
    """
    created = int(time.time())
    # When include_usage is set, OpenAI puts `"usage": null` on every chunk but the last.
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(
        delta: dict[str, Any], finish: str | None = None, lp: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}],
            **extra,
        }

    pending_logprobs = logprobs
    chunks = [chunk({"role": "assistant", "content": ""})]
    content = message.get("content")
    if content:
        chunks.append(chunk({"content": content}, lp=pending_logprobs))
        pending_logprobs = None
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [head]}, lp=pending_logprobs))
        pending_logprobs = None
        args = {"index": index, "function": {"arguments": function["arguments"]}}
        chunks.append(chunk({"tool_calls": [args]}))
    chunks.append(chunk({}, finish=finish_reason, lp=pending_logprobs))
    if include_usage:
        chunks.append(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage_block,
            }
        )
    return chunks


def sse_body(chunks: list[dict[str, Any]]) -> bytes:
    parts = [f"data: {json.dumps(c, ensure_ascii=False, separators=(',', ':'))}\n\n" for c in chunks]
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode("utf-8")


def models_body(model_name: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "ajet"}],
    }
