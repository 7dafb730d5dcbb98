"""Tool-call parsing, request validation and the response/stream builders (no engine needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from ajet.core.gateway.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    completion_body,
    content_text,
    logprobs_block,
    sse_body,
    stream_chunks,
    usage,
    validation_error_to_gateway_error,
)
from ajet.core.gateway.tool_parsers import BUILTIN_TOOL_PARSERS, HermesToolParser, NoToolParser, ToolParser

hermes = HermesToolParser()


def _args(call: dict[str, Any]) -> Any:
    return json.loads(call["function"]["arguments"])


# -- Hermes --------------------------------------------------------------------------------------------------


def test_plain_text_is_returned_exactly() -> None:
    text = "  The answer is 5.\n"
    parsed = hermes.parse(text)
    assert parsed.content == text
    assert parsed.tool_calls == []


def test_one_call_in_openai_format() -> None:
    parsed = hermes.parse('<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>')
    assert parsed.content is None
    (call,) = parsed.tool_calls
    assert call["type"] == "function"
    assert call["id"].startswith("call_") and len(call["id"]) > 10
    assert call["function"]["name"] == "add"
    assert isinstance(call["function"]["arguments"], str)
    assert _args(call) == {"a": 2, "b": 3}


def test_several_calls_with_text_around_and_loose_whitespace() -> None:
    text = (
        'Let me compute.\n<tool_call>  {"name":"add","arguments":{"a":1}}  </tool_call>\n'
        '<tool_call>\n\n{"name": "mul", "arguments": {"x": [1, 2]}}\n</tool_call> done'
    )
    parsed = hermes.parse(text)
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["add", "mul"]
    assert _args(parsed.tool_calls[1]) == {"x": [1, 2]}
    assert parsed.content == "Let me compute.\n\n done"
    assert parsed.tool_calls[0]["id"] != parsed.tool_calls[1]["id"]


def test_missing_closing_tag_at_the_end_is_tolerated() -> None:
    parsed = hermes.parse('ok <tool_call>{"name": "search", "arguments": {"q": "x"}}\n')
    assert parsed.content == "ok"
    assert _args(parsed.tool_calls[0]) == {"q": "x"}


def test_malformed_json_stays_in_content_and_never_raises() -> None:
    bad = '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>'
    assert hermes.parse(bad).content == bad
    assert hermes.parse(bad).tool_calls == []
    # A good call next to a bad one: the good one is parsed, the bad one is left as written.
    mixed = bad + '<tool_call>{"name": "ok", "arguments": {}}</tool_call>'
    parsed = hermes.parse(mixed)
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["ok"]
    assert parsed.content == bad


def test_unclosed_call_followed_by_another_call() -> None:
    parsed = hermes.parse(
        '<tool_call>{"name": "a"<tool_call>{"name": "b", "arguments": {"k": 1}}</tool_call>'
    )
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["b"]
    assert parsed.content == '<tool_call>{"name": "a"'


@pytest.mark.parametrize(
    "body",
    [
        '["add"]',
        '{"arguments": {}}',
        '{"name": 3}',
        '{"name": ""}',
        '{"name": "f", "arguments": 5}',
        "",
        "null",
    ],
)
def test_json_that_is_not_a_call_stays_in_content(body: str) -> None:
    text = f"<tool_call>{body}</tool_call>"
    parsed = hermes.parse(text)
    assert parsed.tool_calls == []
    assert parsed.content == text


def test_arguments_as_json_string_and_parameters_alias() -> None:
    parsed = hermes.parse(
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'
        '<tool_call>{"name": "g", "parameters": {"b": 2}}</tool_call>'
        '<tool_call>{"name": "h"}</tool_call>'
    )
    assert [_args(c) for c in parsed.tool_calls] == [{"a": 1}, {"b": 2}, {}]


def test_no_tool_parser_and_registry() -> None:
    text = '<tool_call>{"name": "add", "arguments": {}}</tool_call>'
    assert NoToolParser().parse(text).content == text
    assert NoToolParser().parse(text).tool_calls == []
    assert set(BUILTIN_TOOL_PARSERS) == {"hermes", "none"}
    for name, cls in BUILTIN_TOOL_PARSERS.items():
        parser = cls()
        assert parser.name == name
        assert isinstance(parser, ToolParser)


# -- request schema ------------------------------------------------------------------------------------------


def _request(**fields: Any) -> ChatCompletionRequest:
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    return validation_error_to_gateway_error(info.value).message


def test_request_accepts_every_message_shape_and_ignores_unknown_keys() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "model": "anything",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "system", "content": [{"type": "text", "text": "sys"}], "cache_control": {}},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
                    ],
                    "reasoning_content": "hmm",
                },
                {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "42"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "stop": "END",
            "max_tokens": 10,
            "max_completion_tokens": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": 2,
            "response_format": {"type": "json_object"},
            "parallel_tool_calls": False,
            "user": "u",
            "metadata": {"k": "v"},
            "top_k": 5,
        }
    )
    assert content_text(request.messages[2].content) == "ab"
    assistant = request.messages[3]
    assert isinstance(assistant, AssistantMessage) and assistant.tool_calls is not None
    assert assistant.tool_calls[0].function.arguments == '{"x": 1}'
    assert request.stop_list == ["END"]
    assert request.requested_max_tokens == 7  # max_completion_tokens wins
    assert request.include_usage


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "m"}, "messages: Field required"),
        ({"messages": []}, "messages: List should have at least 1 item"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0"),
        ({"messages": [{"role": "user"}]}, "messages.0.user.content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool.tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n: Value error, only n=1 is supported"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature:"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens:"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop:"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "not supported: the gateway serves text only",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tool_choice": {"function": {"name": "nope"}}},
            "not in tools",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "tools.0"),
    ],
)
def test_schema_errors_name_the_field(body: dict[str, Any], expected: str) -> None:
    assert expected in _error(body)


def test_request_defaults() -> None:
    request = _request()
    assert request.n == 1 and not request.stream and not request.logprobs
    assert request.stop_list == [] and request.requested_max_tokens is None and not request.include_usage


# -- response builders: checked with the openai SDK's own models and stream accumulator ----------------------

MESSAGE = {
    "role": "assistant",
    "content": "Let me add.",
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "mul", "arguments": "{}"}},
    ],
}


def test_completion_body_parses_as_openai_chat_completion() -> None:
    body = completion_body(
        completion_id="chatcmpl-1",
        model="m",
        message=MESSAGE,
        finish_reason="tool_calls",
        usage_block=usage(10, 3),
        logprobs=logprobs_block(["Let", " me", "é"], [-0.1, -0.2, -0.3]),
    )
    parsed = ChatCompletion.model_validate(body)
    choice = parsed.choices[0]
    assert choice.message.tool_calls is not None and choice.message.tool_calls[1].function.name == "mul"
    assert parsed.usage is not None and parsed.usage.total_tokens == 13
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert choice.logprobs.content[2].bytes == list("é".encode())
    assert choice.logprobs.content[0].top_logprobs == []


def test_stream_chunks_accumulate_to_the_same_message() -> None:
    chunks = stream_chunks(
        completion_id="chatcmpl-1",
        model="m",
        message=MESSAGE,
        finish_reason="tool_calls",
        usage_block=usage(10, 3),
        logprobs=logprobs_block(["a", "b"], [-1.0, -2.0]),
        include_usage=True,
    )
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        list(state.handle_chunk(ChatCompletionChunk.model_validate(chunk)))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me add."
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_1", "add", '{"a": 1}'),
        ("call_2", "mul", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens == 3
    assert chunks[-1]["choices"] == []
    body = sse_body(chunks).decode()
    assert body.endswith("data: [DONE]\n\n")
    assert body.count("data: ") == len(chunks) + 1


def test_stream_without_usage_has_no_usage_chunk() -> None:
    message = {"role": "assistant", "content": "hi"}
    chunks = stream_chunks(
        completion_id="c",
        model="m",
        message=message,
        finish_reason="stop",
        usage_block=usage(1, 1),
        logprobs=None,
        include_usage=False,
    )
    assert all(chunk["choices"] for chunk in chunks)
    assert "usage" not in chunks[0]
