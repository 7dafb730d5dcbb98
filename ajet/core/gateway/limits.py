"""Limits a request is checked against before anything generates: the model's context, and the body's shape.

- Context: a request whose prompt plus `max_tokens` (or `max_completion_tokens`) exceeds the model's context is
  refused with a 400 naming the limit, in vLLM's words, as an OpenAI-compatible server does; silently clamping
  would let `max_tokens: 1000000000000` generate to the end of the context. When the client sends no limit,
  the completion may use the configured default (`rollout.sampling.max_tokens`, 256 unless set), clamped to
  the context the prompt leaves; so a request without `max_tokens` never fails for its length alone, and never
  fills the whole context the way vLLM's default does (a training rollout wants a bounded completion).
- Body: JSON nested deeper than `MAX_NESTING` (Python's parser would hit its recursion limit and every later
  step would risk it too), and strings holding lone UTF-16 surrogates (`"\\ud800"`: valid JSON escapes, but
  not text a tokenizer can encode) are refused with a 400.
"""

from __future__ import annotations

from typing import Any

from ajet.core.gateway.schemas import ChatCompletionRequest, GatewayError

#: Deepest JSON nesting accepted; real requests (messages, tool JSON schemas) stay far below it.
MAX_NESTING = 64


def completion_room(prompt_tokens: int, request: ChatCompletionRequest, context: int) -> int:
    """The most tokens a completion may have after this prompt; a 400 when the request cannot fit."""
    room = context - prompt_tokens
    if room < 1:
        raise GatewayError(
            400,
            f"This model's maximum context length is {context} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens, which leaves no room for a completion. Please reduce the length of the "
            "messages.",
            code="context_length_exceeded",
            param="messages",
        )
    wanted = request.explicit_max_tokens
    if wanted is not None and wanted > room:
        field = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        raise GatewayError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the messages, {wanted} in the completion). "
            f"Please reduce the length of the messages or completion ({field} may be at most {room} for "
            "these messages).",
            code="context_length_exceeded",
            param=field,
        )
    return room


def check_body(raw: Any, *, may_hold_surrogates: bool) -> None:
    """Refuse JSON nested deeper than `MAX_NESTING`, and (when the body has a `\\uD8xx`-`\\uDFxx` escape, the
    only way one gets in) strings with lone surrogates. Iterative, so no depth can overflow the stack."""
    if not isinstance(raw, dict | list):
        return
    # Only containers are pushed: most nodes are strings, and skipping them keeps this cheaper than parsing.
    stack: list[tuple[Any, int]] = [(raw, 1)]
    strings: list[str] = []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise GatewayError(
                400,
                f"request body nests JSON more than {MAX_NESTING} levels deep; no chat request needs that",
                code="invalid_json",
            )
        if isinstance(value, dict):
            if may_hold_surrogates:
                strings.extend(value)
            value = value.values()
        for child in value:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif may_hold_surrogates and isinstance(child, str):
                strings.append(child)
    for text in strings:
        if not _encodable(text):
            raise GatewayError(
                400,
                f"request body has a string with a lone UTF-16 surrogate ({_surrogate(text)}): send text as "
                "valid Unicode (\\uD800-\\uDFFF escapes only as pairs)",
                code="invalid_json",
            )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _surrogate(text: str) -> str:
    first = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return f"\\u{ord(first):04x}"
