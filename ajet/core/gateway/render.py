"""Render OpenAI chat messages (and tools) to the exact prompt token ids the engine is given.

The gateway renders the chat template itself, so the recorded `prompt_ids` are exactly what the model saw. Two
cases:

- The template knows tools (its source mentions `tools`, as Qwen's and Llama 3's do): messages keep their
  OpenAI shape and `tools=` is passed to the template.
- It does not (SmolLM2's template ignores tools): the tools are described Hermes-style in the system
  message, earlier tool calls are written back as the same `<tool_call>` markup the model was asked to
  produce, and tool results use the `tool` role, or `<tool_response>` inside a user turn when the template
  cannot render that role.

Rendering is deterministic and, as far as the template allows, append-only across the turns of an episode: the
tool description is the same every turn, and an assistant turn that returned tool calls is rendered from the
model's own raw text when the gateway still remembers it (`known_completions`), so the next prompt extends the
previous prompt + completion instead of a re-serialization of the parsed calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from ajet.core.gateway.schemas import (
    AssistantMessage,
    ChatMessage,
    FunctionTool,
    NamedToolChoice,
    ToolChoice,
    ToolMessage,
    content_text,
)

_MESSAGES = TypeAdapter(list[ChatMessage])
_PROBE = "ajet-tool-role-probe"

HERMES_TOOLS_PROMPT = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


class RenderError(ValueError):
    """The messages cannot be rendered with this template (the message says why); the gateway answers 400."""


class ChatRenderer:
    def __init__(self, tokenizer: Any) -> None:
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ValueError(
                "the tokenizer has no chat template; the gateway needs one to render chat messages"
            )
        source = template if isinstance(template, str) else " ".join(str(t) for t in dict(template).values())
        self.tokenizer = tokenizer
        # A fast tokenizer's Rust `encode` gives the ids `apply_chat_template(tokenize=True)` gives (it calls
        # `encode_batch` on the same object) but keeps the GIL: `encode_batch` releases it, and taking it back
        # while another thread runs Python (the HTTP server's, the engine's) costs up to a 5 ms switch
        # interval per call.
        rust = getattr(tokenizer, "_tokenizer", None)
        self._encode: Any = rust.encode if callable(getattr(rust, "encode", None)) else None
        #: the template renders `tools=` itself; otherwise the renderer injects the Hermes description
        self.native_tools = "tools" in source
        #: the template can render role "tool" (checked once, by rendering a probe conversation)
        self.tool_role = self.native_tools or self._renders_tool_role()

    # -- public ----------------------------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        tools: Sequence[FunctionTool | Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | str | Mapping[str, Any] | None = None,
        known_completions: Mapping[str, str] | None = None,
    ) -> list[int]:
        """Prompt token ids, ending with the generation prompt (the assistant turn's opening)."""
        conversation, tool_dicts = self.conversation(messages, tools, tool_choice, known_completions)
        if self._encode is not None:
            text = self._apply(conversation, tool_dicts, tokenize=False)
            return list(self._encode(text, add_special_tokens=False).ids)
        out = self._apply(conversation, tool_dicts, tokenize=True)
        # transformers 5 returns a BatchEncoding; older versions a plain list.
        return list(out if isinstance(out, list) else out["input_ids"])

    def render_text(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        tools: Sequence[FunctionTool | Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | str | Mapping[str, Any] | None = None,
        known_completions: Mapping[str, str] | None = None,
    ) -> str:
        """The same prompt as text, for debugging and tests."""
        conversation, tool_dicts = self.conversation(messages, tools, tool_choice, known_completions)
        return str(self._apply(conversation, tool_dicts, tokenize=False))

    def completion_ids(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        response: ChatMessage | Mapping[str, Any],
        tools: Sequence[FunctionTool | Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """The ids a model writes when it answers `messages` with the assistant message `response`, ending with
        the end-of-turn token: what supervised fine-tuning on a demonstration trains on."""
        conversation, tool_dicts = self.conversation([*messages, response], tools)
        full = str(self._apply(conversation, tool_dicts, tokenize=False, add_generation_prompt=False))
        prompt = self.render_text(messages, tools)
        if not full.startswith(prompt):
            raise RenderError(
                "the chat template renders earlier turns differently once an answer follows them"
            )
        ids = list(self.tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"])
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            return ids[: ids.index(eos) + 1]  # what follows the end-of-turn token is template glue
        return [*ids, eos]

    def conversation(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        tools: Sequence[FunctionTool | Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | str | Mapping[str, Any] | None = None,
        known_completions: Mapping[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The messages as the template receives them, and the `tools=` argument (None when injected)."""
        parsed = _as_messages(messages)
        tool_list = _as_tools(tools)
        choice = _as_choice(tool_choice)
        if tool_list and choice == "none":
            tool_list = []
        elif tool_list and isinstance(choice, NamedToolChoice):
            tool_list = [t for t in tool_list if t.function.name == choice.function.name]
        tool_dicts = [t.model_dump(exclude_none=True) for t in tool_list]

        if self.native_tools:
            return [self._native_message(m) for m in parsed], tool_dicts or None
        known = known_completions or {}
        conversation = [self._hermes_message(m, known) for m in parsed]
        if tool_dicts:
            _inject_tools(conversation, tool_dicts, choice)
        return conversation, None

    # -- internals -------------------------------------------------------------------------------------------

    def _apply(
        self,
        conversation: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tokenize: bool,
        add_generation_prompt: bool = True,
    ) -> Any:
        kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt, "tokenize": tokenize}
        if tools:
            kwargs["tools"] = tools
        try:
            return self.tokenizer.apply_chat_template(conversation, **kwargs)
        except Exception as exc:  # jinja's TemplateError, raise_exception(...) in the template, ...
            raise RenderError(f"the chat template cannot render these messages: {exc}") from exc

    def _renders_tool_role(self) -> bool:
        probe = [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "tool", "content": _PROBE},
        ]
        try:
            text = self.tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
        except Exception:
            return False
        return _PROBE in str(text)

    @staticmethod
    def _native_message(message: ChatMessage) -> dict[str, Any]:
        role = "system" if message.role == "developer" else message.role
        out: dict[str, Any] = {"role": role, "content": content_text(message.content)}
        if isinstance(message, AssistantMessage) and message.tool_calls:
            # HF templates expect arguments as an object (they `tojson` it themselves).
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments_object(call.function.arguments),
                    },
                }
                for call in message.tool_calls
            ]
        elif isinstance(message, ToolMessage):
            out["tool_call_id"] = message.tool_call_id
            if message.name:
                out["name"] = message.name
        return out

    def _hermes_message(self, message: ChatMessage, known: Mapping[str, str]) -> dict[str, Any]:
        if isinstance(message, AssistantMessage) and message.tool_calls:
            raw = _raw_completion(message, known)
            if raw is None:
                calls = "\n".join(
                    _hermes_call(c.function.name, c.function.arguments) for c in message.tool_calls
                )
                text = content_text(message.content)
                raw = f"{text}\n{calls}" if text else calls
            return {"role": "assistant", "content": raw}
        if isinstance(message, ToolMessage):
            text = content_text(message.content)
            if self.tool_role:
                return {"role": "tool", "content": text}
            return {"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"}
        role = "system" if message.role == "developer" else message.role
        return {"role": role, "content": content_text(message.content)}


def _inject_tools(conversation: list[dict[str, Any]], tools: list[dict[str, Any]], choice: Any) -> None:
    block = HERMES_TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    if choice == "required":
        block += "\n\nYou must call at least one function."
    elif isinstance(choice, NamedToolChoice):
        block += f"\n\nYou must call the function {choice.function.name!r}."
    if conversation and conversation[0]["role"] == "system":
        first = conversation[0]["content"]
        conversation[0] = {"role": "system", "content": f"{first}\n\n{block}" if first else block}
    else:
        conversation.insert(0, {"role": "system", "content": block})


def _raw_completion(message: AssistantMessage, known: Mapping[str, str]) -> str | None:
    """The model's own text for this turn, if all of its tool calls came from the same remembered one."""
    if not known or not message.tool_calls:
        return None
    texts = {known.get(call.id) for call in message.tool_calls}
    if len(texts) != 1:
        return None
    return texts.pop()


def _hermes_call(name: str, arguments: str) -> str:
    payload = {"name": name, "arguments": _arguments_object(arguments)}
    return f"<tool_call>\n{json.dumps(payload, ensure_ascii=False)}\n</tool_call>"


def _arguments_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # not JSON: show the model the string it sent


def _as_messages(messages: Sequence[ChatMessage | Mapping[str, Any]]) -> list[ChatMessage]:
    if all(not isinstance(m, Mapping) for m in messages):
        return list(messages)  # type: ignore[arg-type]
    return _MESSAGES.validate_python([m if isinstance(m, Mapping) else m.model_dump() for m in messages])


def _as_tools(tools: Sequence[FunctionTool | Mapping[str, Any]] | None) -> list[FunctionTool]:
    return [t if isinstance(t, FunctionTool) else FunctionTool.model_validate(t) for t in tools or []]


def _as_choice(choice: ToolChoice | str | Mapping[str, Any] | None) -> Any:
    if isinstance(choice, Mapping):
        return NamedToolChoice.model_validate(choice)
    return choice
