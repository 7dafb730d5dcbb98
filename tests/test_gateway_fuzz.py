"""500+ malformed request bodies over real loopback HTTP: every one gets a 4xx with an OpenAI-style JSON error,
none generates, and the gateway keeps serving.

The bodies come from a seeded generator (reproducible, no extra dependency): broken JSON, invalid UTF-8, JSON
that is not an object, every field with a wrong type or an out-of-range number, deep nesting, messages with bad
roles or shapes, tools of the wrong shape, with assorted content types and an empty body.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, SamplingParams

SEED = 20261202
COUNT = 520
USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]

# Values that are the wrong type (or out of range) for every typed field of a request.
WRONG_SCALARS: list[Any] = [
    None,
    "",
    "x",
    "12",
    -1,
    0,
    1.5,
    -1e308,
    10**40,
    True,
    [],
    [1, 2],
    {},
    {"a": 1},
]
# Each field, with values that must fail for it (a value the field accepts would generate: not in the list).
BAD_FIELDS: dict[str, list[Any]] = {
    "messages": [None, "hi", 1, {}, [], [None], [1], ["hi"], [[USER]], {"role": "user", "content": "x"}],
    "temperature": ["hot", -0.1, 2.5, 1e309, [0.5], {"v": 1}, float("nan")],
    "top_p": ["all", -0.5, 1.5, [1], {}],
    "max_tokens": [0, -5, 1.5, "10", [3], {}, 10**12, 10**30, 2**63],
    "max_completion_tokens": [0, -1, 2.7, "many", 10**15, [1]],
    "n": [0, 2, 10, -1, "1x", [1]],
    "stop": ["", [""], [1], [["a"]], {"s": 1}, 5],
    "stream": ["maybe", [True], {}, 3],
    "stream_options": ["yes", 5, [True], {"include_usage": "maybe"}, {"include_usage": [1]}],
    "logprobs": ["sure", [1], {}, 7],
    "top_logprobs": [-1, 21, 100, "5", [1]],
    "seed": ["s", 1.5, [1], {}, 2**70, -(2**70)],
    "tools": ["add", 1, {}, [1], ["add"], [{}], [{"type": "function"}], [{"type": "retrieval"}], [TOOL, 3]],
    "tool_choice": [
        "always",
        1,
        [],
        {"type": "function"},
        {"type": "function", "function": {"name": "missing"}},
        {"function": "add"},
    ],
    "parallel_tool_calls": ["no", [], {}, 3],
    "response_format": ["json", 5, [1], True],
    "model": [1, [], {}, True],
}
BAD_MESSAGES: list[Any] = [
    {"role": "robot", "content": "x"},
    {"role": "", "content": "x"},
    {"role": None, "content": "x"},
    {"role": 1, "content": "x"},
    {"content": "no role"},
    {"role": "user"},
    {"role": "user", "content": None},
    {"role": "user", "content": 5},
    {"role": "user", "content": {"text": "x"}},
    {"role": "user", "content": [{"type": "text"}]},
    {"role": "user", "content": [{"type": "video", "url": "x"}]},
    {"role": "user", "content": [{"text": "no type"}]},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]},
    {"role": "user", "content": [5]},
    {"role": "system", "content": ["x"]},
    {"role": "tool", "content": "result"},
    {"role": "tool", "content": "r", "tool_call_id": 5},
    {"role": "assistant", "tool_calls": "add"},
    {"role": "assistant", "tool_calls": [{"id": "c1"}]},
    {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]},
    {"role": "assistant", "tool_calls": [{"id": 1, "function": {"name": "add"}}]},
    {"role": "assistant", "tool_calls": [{"id": "c", "type": "code", "function": {"name": "add"}}]},
    {"role": "user", "content": "x", "name": 5},
    "user: hi",
    None,
    7,
    ["user", "hi"],
]
BROKEN_JSON: list[bytes] = [
    b"{",
    b"}",
    b'{"messages": [',
    b'{"messages": [{"role": "user", "content": "hi"}]',
    b'{"messages": [{"role": "user", "content": "hi"}]}}',
    b'{"messages": [{"role": "user", "content": "hi",}]}',
    b"{'messages': []}",
    b'{"messages": [{"role": "user", "content": "hi"}] "n": 1}',
    b"messages=hi",
    b"<xml/>",
    b"null null",
    b'{"a": 1e99999999999999999999}',
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": }',
    b"\x00\x01\x02",
    b"   ",
    b"\n",
]
NOT_OBJECTS: list[bytes] = [
    b"[]",
    b"[1, 2]",
    b'[{"messages": []}]',
    b'"messages"',
    b"42",
    b"-1e400",
    b"true",
    b"null",
    b"NaN",
    b"Infinity",
]


def _deep(depth: int, rng: random.Random) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _deep_tool(rng: random.Random, depth: int) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "x": _deep(depth, rng)}},
    }


def _deep_json(depth: int) -> bytes:
    # Built as text: json.dumps recurses and could not build it.
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


def _invalid_utf8(rng: random.Random) -> bytes:
    body = json.dumps({"messages": [USER], "max_tokens": 2}).encode()
    cut = rng.randrange(2, len(body) - 2)
    junk = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xfe\xff"])
    return body[:cut] + junk + body[cut:]


def _garbage(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return _deep(rng.randrange(1, 40), rng)
    if kind == 1:
        return rng.choice(WRONG_SCALARS)
    if kind == 2:
        return {rng.choice(["role", "content", "x", ""]): rng.choice(WRONG_SCALARS) for _ in range(3)}
    if kind == 3:
        return [rng.choice(WRONG_SCALARS) for _ in range(rng.randrange(1, 5))]
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 30)))
    return rng.random() * 10 ** rng.randrange(0, 300)


def _dumps(value: Any) -> bytes:
    # Raw UTF-8 (not \u escapes) so that random text exercises the byte decoding too.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def malformed_bodies(seed: int = SEED, count: int = COUNT) -> Iterator[tuple[str, bytes]]:
    """(label, body) pairs, each a request the gateway must refuse before generating."""
    rng = random.Random(seed)
    fixed: list[tuple[str, bytes]] = [("empty body", b"")]
    fixed += [(f"broken json {b[:30]!r}", b) for b in BROKEN_JSON]
    fixed += [(f"not an object {b!r}", b) for b in NOT_OBJECTS]
    fixed += [
        (f"{name}={value!r}"[:80], _dumps({"messages": [USER], name: value}))
        for name, values in BAD_FIELDS.items()
        for value in values
    ]
    fixed += [(f"message {m!r}"[:80], _dumps({"messages": [USER, m]})) for m in BAD_MESSAGES]
    fixed += [(f"nested {d}", _deep_json(d)) for d in (10, 1_000, 100_000, 1_000_000)]
    fixed += [
        ("lone surrogate in content", b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}'),
        ("lone surrogate in a key", b'{"messages": [{"role": "user", "content": "hi"}], "\\udfff": 1}'),
        ("deep tool parameters", _dumps({"messages": [USER], "tools": [_deep_tool(rng, 200)]})),
        (
            "deeper tool parameters",
            b'{"messages": [{"role": "user", "content": "hi"}], "tools": ['
            + b'{"p":' * 5000
            + b"1"
            + b"}" * 5000
            + b"]}",
        ),
    ]
    yield from fixed
    makers: list[Callable[[], tuple[str, bytes]]] = [
        lambda: ("invalid utf-8", _invalid_utf8(rng)),
        lambda: ("garbage body", _dumps(_garbage(rng))),
        lambda: _bad_field(rng),
        lambda: _bad_message(rng),
        lambda: ("truncated", _dumps({"messages": [USER], "tools": [TOOL]})[: rng.randrange(1, 60)]),
        lambda: ("random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))),
    ]
    for _ in range(count - len(fixed)):
        yield rng.choice(makers)()


def _bad_field(rng: random.Random) -> tuple[str, bytes]:
    name = rng.choice(list(BAD_FIELDS))
    value = rng.choice(BAD_FIELDS[name])
    body: dict[str, Any] = {"messages": [USER], "max_tokens": 2}
    # Noise a lenient server must ignore, around the one field that must fail.
    for _ in range(rng.randrange(3)):
        body[f"x_{rng.randrange(100)}"] = _garbage(rng)
    body[name] = value
    return f"random {name}={value!r}"[:80], _dumps(body)


def _bad_message(rng: random.Random) -> tuple[str, bytes]:
    message = rng.choice(BAD_MESSAGES)
    messages = [USER] * rng.randrange(3)
    messages.insert(rng.randrange(len(messages) + 1), message)
    return f"random message {message!r}"[:80], _dumps({"messages": messages, "max_tokens": 2})


async def test_every_malformed_body_gets_a_json_4xx(engine: TransformersEngine) -> None:
    sampling = SamplingParams(max_tokens=2, temperature=0)
    backend = EngineChatBackend(engine, ChatRenderer(engine.tokenizer), HermesToolParser(), sampling)
    gateway = Gateway(backend, MemoryStore(), max_request_bytes=4_000_000)
    base_url = await gateway.start_http()
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    key = gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))
    bodies = list(malformed_bodies())
    assert len(bodies) >= 500
    failures: list[str] = []
    limits = httpx.Limits(max_connections=8)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as http:

            async def send(index: int, label: str, body: bytes) -> None:
                content_type = CONTENT_TYPES[index % len(CONTENT_TYPES)]
                headers = {"Authorization": f"Bearer {key}"}
                if content_type is not None:
                    headers["Content-Type"] = content_type
                try:
                    response = await http.post("/chat/completions", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"{label}: no HTTP answer ({type(exc).__name__}: {exc})")
                    return
                problem = _problem(response)
                if problem:
                    failures.append(f"{label}: {problem}")

            semaphore = asyncio.Semaphore(8)

            async def guarded(index: int, label: str, body: bytes) -> None:
                async with semaphore:
                    await send(index, label, body)

            await asyncio.gather(*(guarded(i, label, body) for i, (label, body) in enumerate(bodies)))
            assert not failures, f"{len(failures)} of {len(bodies)} bodies:\n" + "\n".join(failures[:30])
            assert gateway.store.calls(episode.episode_id) == []  # nothing generated, nothing recorded
            ok = await http.post(
                "/chat/completions",
                json={"messages": [USER], "max_tokens": 2},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert ok.status_code == 200, ok.text
    finally:
        await gateway.aclose()


def _problem(response: httpx.Response) -> str | None:
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"not JSON ({response.headers.get('content-type')}): {response.text[:200]}"
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"no error object: {response.text[:200]}"
    if set(error) != {"message", "type", "param", "code"}:
        return f"error keys {sorted(error)}"
    if not isinstance(error["message"], str) or not error["message"]:
        return "empty error message"
    return None
