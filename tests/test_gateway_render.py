"""Chat-template rendering with the real SmolLM2 tokenizer (whose template ignores tools), and with two other
templates applied to the same tokenizer (one that renders tools itself, one that rejects the tool role)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ajet.core.gateway.render import ChatRenderer, RenderError

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        },
    },
    {"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}},
]

# A Qwen-like template that renders `tools` and tool calls itself.
NATIVE_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}"
    "{% endfor %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A template that only knows system/user/assistant, as many do.
STRICT_TEMPLATE = (
    "{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m.role) }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class WithTemplate:
    """The real tokenizer with another chat template, passed per call (the shared one is not mutated)."""

    def __init__(self, tokenizer: Any, template: str) -> None:
        self.tokenizer = tokenizer
        self.chat_template = template

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, **kwargs)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_and_tokenizer: tuple[Any, Any]) -> Any:
    return tiny_model_and_tokenizer[1]


@pytest.fixture(scope="module")
def renderer(tokenizer: Any) -> ChatRenderer:
    return ChatRenderer(tokenizer)


def test_smollm2_template_is_detected_as_not_knowing_tools(renderer: ChatRenderer) -> None:
    assert not renderer.native_tools
    assert renderer.tool_role  # it renders any role name


def test_plain_messages_render_exactly_like_the_template(renderer: ChatRenderer, tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    ids = renderer.render(messages)
    assert ids == list(expected)
    assert all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert renderer.render(messages) == ids  # deterministic


def test_content_parts_are_flattened_and_developer_is_system(renderer: ChatRenderer) -> None:
    parts = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "2+3?"}]},
    ]
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    assert renderer.render(parts) == renderer.render(plain)


def test_tools_are_injected_into_a_new_system_message(renderer: ChatRenderer) -> None:
    text = renderer.render_text([{"role": "user", "content": "add 2 and 3"}], TOOLS)
    assert text.startswith("<|im_start|>system\n# Tools")
    assert "SmolLM" not in text  # the template's default system prompt is replaced, not doubled
    tools_json = text.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()
    assert [json.loads(line) for line in tools_json] == TOOLS
    assert "<tool_call>\n" in text and '"arguments": <args-json-object>' in text
    assert text.endswith("<|im_start|>user\nadd 2 and 3<|im_end|>\n<|im_start|>assistant\n")


def test_tools_are_appended_to_an_existing_system_message(renderer: ChatRenderer) -> None:
    messages = [{"role": "system", "content": "You are a calculator."}, {"role": "user", "content": "hi"}]
    text = renderer.render_text(messages, TOOLS)
    assert text.startswith("<|im_start|>system\nYou are a calculator.\n\n# Tools")
    assert text.count("<|im_start|>system") == 1


def test_tool_choice(renderer: ChatRenderer) -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert renderer.render(messages, TOOLS, "none") == renderer.render(messages)
    named = renderer.render_text(messages, TOOLS, {"type": "function", "function": {"name": "mul"}})
    assert '"name": "mul"' in named and '"name": "add"' not in named
    assert "You must call the function 'mul'." in named
    assert "You must call at least one function." in renderer.render_text(messages, TOOLS, "required")
    assert "You must" not in renderer.render_text(messages, TOOLS, "auto")


def test_tool_calls_and_results_are_rendered(renderer: ChatRenderer) -> None:
    messages = [
        {"role": "user", "content": "add 2 and 3"},
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "mul", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "0"}]},
    ]
    text = renderer.render_text(messages, TOOLS)
    assert (
        "<|im_start|>assistant\nSure.\n"
        '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>\n'
        '<tool_call>\n{"name": "mul", "arguments": {}}\n</tool_call><|im_end|>\n'
        "<|im_start|>tool\n5<|im_end|>\n<|im_start|>tool\n0<|im_end|>\n<|im_start|>assistant\n"
    ) in text
    # content null with tool calls: only the markup
    messages[1]["content"] = None
    assert "<|im_start|>assistant\n<tool_call>" in renderer.render_text(messages, TOOLS)


def test_remembered_raw_completion_is_rendered_verbatim(renderer: ChatRenderer) -> None:
    raw = 'I will add.<tool_call>{"name":"add","arguments":{"a":2,"b":3}}</tool_call>'
    messages = [
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "content": "I will add.",
            "tool_calls": [{"id": "call_x", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}],
        },
        {"role": "tool", "tool_call_id": "call_x", "content": "5"},
    ]
    text = renderer.render_text(messages, TOOLS, known_completions={"call_x": raw})
    assert f"<|im_start|>assistant\n{raw}<|im_end|>" in text
    # unknown ids fall back to the re-serialized markup
    assert raw not in renderer.render_text(messages, TOOLS, known_completions={"other": raw})


def test_rendering_is_append_only_across_turns(renderer: ChatRenderer, tokenizer: Any) -> None:
    """The next turn's prompt starts with the previous prompt + the completion's text + end of turn."""
    turn1 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    prompt1 = renderer.render(turn1, TOOLS)
    completion = "It is 5."
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    turn2 = [*turn1, {"role": "assistant", "content": completion}, {"role": "user", "content": "And 3+4?"}]
    prompt2 = renderer.render(turn2, TOOLS)
    assert prompt2[: len(prompt1) + len(completion_ids)] == prompt1 + completion_ids


def test_template_with_native_tools(tokenizer: Any) -> None:
    renderer = ChatRenderer(WithTemplate(tokenizer, NATIVE_TEMPLATE))
    assert renderer.native_tools
    messages = [
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]
    text = renderer.render_text(messages, TOOLS)
    assert text.startswith("<|im_start|>system\nTOOLS:add;mul;<|im_end|>")
    assert '<|im_start|>assistant\nCALL add {"a": 1}<|im_end|>' in text  # arguments given as an object
    assert "<|im_start|>tool\n1<|im_end|>" in text
    assert "<tools>" not in text
    assert renderer.render(messages, TOOLS) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_template_without_tool_role_wraps_results(tokenizer: Any) -> None:
    renderer = ChatRenderer(WithTemplate(tokenizer, STRICT_TEMPLATE))
    assert not renderer.native_tools and not renderer.tool_role
    messages = [
        {"role": "user", "content": "add"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
    ]
    text = renderer.render_text(messages, TOOLS)
    assert "<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>" in text


def test_template_errors_become_render_errors(tokenizer: Any) -> None:
    renderer = ChatRenderer(WithTemplate(tokenizer, STRICT_TEMPLATE))
    renderer.native_tools, renderer.tool_role = True, True  # pass the tool role through: the template raises
    with pytest.raises(RenderError, match="unknown role tool"):
        renderer.render([{"role": "tool", "tool_call_id": "c", "content": "x"}])


def test_tokenizer_without_template_is_refused(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="no chat template"):
        ChatRenderer(WithTemplate(tokenizer, ""))


def test_fast_encode_matches_apply_chat_template(renderer: ChatRenderer, tokenizer: Any) -> None:
    """The renderer encodes with the Rust tokenizer directly (it keeps the GIL); the ids must be exactly those
    `apply_chat_template(tokenize=True)` gives."""
    assert renderer._encode is not None
    conversations = [
        [{"role": "user", "content": "héllo  wörld 🙂\n\n  tabs\tand   spaces "}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "x<|im_end|>y <tool_call> </tools>"}],
        [
            {"role": "user", "content": "add"},
            {"role": "assistant", "content": " 12\n"},
            {"role": "user", "content": "ok"},
        ],
    ]
    for messages in conversations:
        for tools in (None, TOOLS):
            conversation, _ = renderer.conversation(messages, tools)
            expected = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
            assert renderer.render(messages, tools) == list(expected["input_ids"])
