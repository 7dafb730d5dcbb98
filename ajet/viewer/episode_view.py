"""One episode as the episode page shows it: its calls in order (the messages each added since the agent's
previous call, the reply, tool calls), the samples trained from it with their tokens, and each merge mismatch
marked in the sample it broke off from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from ajet.core.store.records import MismatchRecord, SampleRecord
from ajet.core.types import LlmCall
from ajet.viewer.tokens import Decoder, TokenMark, render_tokens


@dataclass
class MessageView:
    role: str
    name: str | None
    text: str
    tool_calls: list[dict[str, str]]  # {id, name, arguments (pretty JSON where it parses)}
    tool_call_id: str | None
    other: str  # non-text content parts (images...), as JSON


@dataclass
class CallView:
    call: LlmCall
    earlier: list[MessageView]  # what the agent's previous call already showed (collapsed on the page)
    new: list[MessageView]
    reply: MessageView
    sample_index: int | None  # the sample this call's tokens are trained in (None: not trained)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    completion: Markup | None = None  # tokens of an untrained call that has them (validation)


@dataclass
class SampleView:
    index: int
    record: SampleRecord
    tokens: Markup
    trained_tokens: int
    call_seqs: list[int]
    marks: int  # mismatch markers drawn in it


def message_view(message: dict[str, Any]) -> MessageView:
    content = message.get("content")
    other: list[Any] = []
    if isinstance(content, list):  # content parts: text joined, the rest shown as JSON
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                other.append(part)
        text = "\n".join(texts)
    else:
        text = "" if content is None else str(content)
    calls = []
    for tool_call in message.get("tool_calls") or []:
        if not isinstance(tool_call, dict):
            continue
        function = tool_call.get("function") or {}
        calls.append(
            {
                "id": str(tool_call.get("id", "")),
                "name": str(function.get("name", "")),
                "arguments": _pretty(function.get("arguments")),
            }
        )
    return MessageView(
        role=str(message.get("role", "?")),
        name=message.get("name"),
        text=text,
        tool_calls=calls,
        tool_call_id=message.get("tool_call_id"),
        other=json.dumps(other, ensure_ascii=False, indent=1) if other else "",
    )


def _pretty(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return json.dumps(json.loads(arguments), ensure_ascii=False, indent=1)
        except ValueError:
            return arguments
    return json.dumps(arguments, ensure_ascii=False, indent=1)


def _shared_prefix(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> int:
    count = 0
    for old, new in zip(previous, current, strict=False):
        if old != new:
            break
        count += 1
    return count


def build_episode_view(
    calls: list[LlmCall],
    samples: list[SampleRecord],
    mismatches: list[MismatchRecord],
    decoder: Decoder,
) -> tuple[list[CallView], list[SampleView], list[dict[str, Any]]]:
    """The calls, the samples and the mismatches that could not be placed in a sample (shown in a list)."""
    sample_of_call: dict[str, int] = {}
    for index, sample in enumerate(samples):
        for call_id in sample.call_ids:
            sample_of_call.setdefault(call_id, index)
    seq_of_call = {call.call_id: call.seq for call in calls}

    views: list[CallView] = []
    seen: dict[str, list[dict[str, Any]]] = {}  # agent -> its previous call's messages and reply
    for call in calls:
        previous = seen.get(call.agent_name, [])
        shared = _shared_prefix(previous, call.messages)
        views.append(
            CallView(
                call=call,
                earlier=[message_view(m) for m in call.messages[:shared]],
                new=[message_view(m) for m in call.messages[shared:]],
                reply=message_view({"role": "assistant", **call.response}),
                sample_index=sample_of_call.get(call.call_id),
            )
        )
        seen[call.agent_name] = [*call.messages, {"role": "assistant", **call.response}]

    marks: dict[int, list[TokenMark]] = {}
    unplaced: list[dict[str, Any]] = []
    by_call = {view.call.call_id: view for view in views}
    for mismatch in mismatches:
        info = _mismatch_info(mismatch, decoder)
        view = by_call.get(mismatch.call_id)
        if view is not None:
            view.mismatches.append(info)
        target = _previous_sample(mismatch, calls, sample_of_call)
        if target is None:
            unplaced.append(info)
            continue
        info["sample_index"] = target
        marks.setdefault(target, []).append(TokenMark(mismatch.position, info["label"]))

    sample_views = []
    for index, sample in enumerate(samples):
        sample_views.append(
            SampleView(
                index=index,
                record=sample,
                tokens=render_tokens(
                    sample.input_ids,
                    sample.loss_mask,
                    sample.old_logprobs,
                    sample.advantage,
                    decoder,
                    marks.get(index),
                ),
                trained_tokens=sum(1 for m in sample.loss_mask if m),
                call_seqs=[seq_of_call[c] for c in sample.call_ids if c in seq_of_call],
                marks=len(marks.get(index, [])),
            )
        )
    # the tokens of calls no sample holds (validation, untrained roles), for their log-probs
    for view in views:
        call = view.call
        if view.sample_index is None and call.completion_ids:
            view.completion = render_tokens(
                call.completion_ids, [1] * len(call.completion_ids), call.logprobs or [], 0.0, decoder
            )
    return views, sample_views, unplaced


def _previous_sample(
    mismatch: MismatchRecord, calls: list[LlmCall], sample_of_call: dict[str, int]
) -> int | None:
    """The sample whose sequence `mismatch.position` indexes: the one holding the call the new call failed to
    extend (the agent's previous call; for "different_agent", the episode's previous call)."""
    index = next((i for i, c in enumerate(calls) if c.call_id == mismatch.call_id), None)
    if index is None:
        return None
    for call in reversed(calls[:index]):
        if mismatch.reason == "different_agent" or call.agent_name == mismatch.agent_name:
            return sample_of_call.get(call.call_id)
    return None


def _mismatch_info(mismatch: MismatchRecord, decoder: Decoder) -> dict[str, Any]:
    def token(token_id: int | None) -> str:
        return "(end)" if token_id is None else f"{token_id} {decoder.text(token_id)!r}"

    label = (
        f"{mismatch.reason} at #{mismatch.position}: expected {token(mismatch.expected)}, "
        f"found {token(mismatch.found)}"
    )
    return {"record": mismatch, "label": label, "sample_index": None}
