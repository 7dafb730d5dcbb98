"""Malformed and unauthorized requests over real loopback HTTP: each gets a clear OpenAI-style 4xx (a 500 for
an engine failure), nothing is recorded, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding, OpenAIEndpoint
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, SamplingParams

LIMIT = 64_000
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def make_gateway(engine: TransformersEngine, **kwargs: Any) -> Gateway:
    sampling = SamplingParams(max_tokens=2, temperature=0)
    backend = EngineChatBackend(engine, ChatRenderer(engine.tokenizer), HermesToolParser(), sampling)
    return Gateway(backend, MemoryStore(), **kwargs)


@pytest.fixture(scope="module")
def gateway(engine: TransformersEngine) -> Iterator[Gateway]:
    gateway = make_gateway(engine, max_request_bytes=LIMIT)
    asyncio.run(gateway.start_http())
    yield gateway
    asyncio.run(gateway.aclose())


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url or "", timeout=30) as client:
        yield client


def new_key(gateway: Gateway, *, add_episode: bool = True) -> tuple[str, str]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    if add_episode:
        gateway.store.add_episode(episode)
    return episode.episode_id, gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


async def assert_still_serving(gateway: Gateway, http: httpx.AsyncClient) -> None:
    episode_id, key = new_key(gateway)
    response = await http.post("/chat/completions", json=HI, headers=auth(key))
    assert response.status_code == 200, response.text
    assert len(gateway.store.calls(episode_id)) == 1


async def test_missing_or_unknown_key_is_401(gateway: Gateway, http: httpx.AsyncClient) -> None:
    missing = await http.post("/chat/completions", json=HI)
    error = await assert_error(missing, 401, "missing API key")
    assert error["type"] == "authentication_error" and missing.headers["www-authenticate"] == "Bearer"
    await assert_error(
        await http.post("/chat/completions", json=HI, headers=auth("ajet-nope")), 401, "invalid"
    )
    _, key = new_key(gateway)
    basic = await http.post("/chat/completions", json=HI, headers={"Authorization": f"Basic {key}"})
    await assert_error(basic, 401, "invalid API key")
    await assert_still_serving(gateway, http)


async def test_revoked_key_is_401_and_records_nothing(gateway: Gateway, http: httpx.AsyncClient) -> None:
    episode_id, key = new_key(gateway)
    assert (await http.post("/chat/completions", json=HI, headers=auth(key))).status_code == 200
    assert gateway.keys.revoke_episode(episode_id) == 1
    await assert_error(await http.post("/chat/completions", json=HI, headers=auth(key)), 401, "revoked")
    assert len(gateway.store.calls(episode_id)) == 1
    await assert_still_serving(gateway, http)


@pytest.mark.parametrize(
    ("body", "status", "fragment", "param"),
    [
        (b'{"messages": [', 400, "not valid JSON", None),
        (b"\xff\xfe", 400, "not valid UTF-8", None),
        (b"[1, 2]", 400, "must be a JSON object", None),
        (json.dumps({"model": "m"}).encode(), 400, "messages: Field required", "messages"),
        (json.dumps({**HI, "n": 2}).encode(), 400, "only n=1 is supported", "n"),
        (
            json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
            400,
            "messages.0",
            "messages.0",
        ),
        (json.dumps({**HI, "temperature": "hot"}).encode(), 400, "temperature", "temperature"),
        # Strict types, as OpenAI's: a number or flag sent as a string is a client bug, not a value to guess.
        (
            json.dumps({**HI, "max_tokens": "10"}).encode(),
            400,
            "max_tokens: Input should be a valid integer",
            None,
        ),
        (
            json.dumps({**HI, "stream": "no"}).encode(),
            400,
            "stream: Input should be a valid boolean",
            "stream",
        ),
        (json.dumps({**HI, "seed": 2**64}).encode(), 400, "seed: Input should be less than", "seed"),
        (b"", 400, "request body is empty", None),
        (b"\xed\xa0\x80", 400, "not valid UTF-8", None),  # a UTF-8-encoded surrogate
        (
            b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
            400,
            "lone UTF-16 surrogate (\\ud800)",
            None,
        ),
        (b'{"messages": ' + b"[" * 100 + b"]" * 100 + b"}", 400, "more than 64 levels deep", None),
        (b'{"messages": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400, "more than 64 levels deep", None),
    ],
)
async def test_malformed_requests_are_400(
    gateway: Gateway, http: httpx.AsyncClient, body: bytes, status: int, fragment: str, param: str | None
) -> None:
    episode_id, key = new_key(gateway)
    response = await http.post(
        "/chat/completions", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )
    error = await assert_error(response, status, fragment)
    if param is not None:
        assert error["param"] == param
    assert gateway.store.calls(episode_id) == []
    await assert_still_serving(gateway, http)


async def test_oversized_body_is_413(gateway: Gateway, http: httpx.AsyncClient) -> None:
    episode_id, key = new_key(gateway)
    big = {"messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]}
    response = await http.post("/chat/completions", json=big, headers=auth(key))
    await assert_error(response, 413, "exceeds the gateway's limit", str(LIMIT))

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 10_000
        yield b'"}]}'

    response = await http.post("/chat/completions", content=chunked(), headers=auth(key))
    assert "content-length" not in response.request.headers
    await assert_error(response, 413, "exceeds")
    assert gateway.store.calls(episode_id) == []
    await assert_still_serving(gateway, http)


async def test_prompt_longer_than_the_context_is_400(engine: TransformersEngine) -> None:
    gateway = make_gateway(engine)  # the default 4 MB limit: the body is fine, the prompt is not
    await gateway.start_http()
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url or "", timeout=30) as http:
            _, key = new_key(gateway)
            long = {"messages": [{"role": "user", "content": "hello " * 9000}]}
            response = await http.post("/chat/completions", json=long, headers=auth(key))
            error = await assert_error(response, 400, "maximum context length is 8192 tokens")
            assert error["code"] == "context_length_exceeded"
            await assert_still_serving(gateway, http)
    finally:
        await gateway.aclose()


async def test_engine_failure_is_500_and_the_gateway_keeps_serving(
    gateway: Gateway, http: httpx.AsyncClient, tiny_model_and_tokenizer: tuple[Any, Any]
) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    dead_engine = TransformersEngine(model, tokenizer)
    dead_engine.close()  # a real engine that has stopped: generate raises EngineClosedError
    broken = make_gateway(dead_engine)
    await broken.start_http()
    try:
        async with httpx.AsyncClient(base_url=broken.base_url or "", timeout=30) as client:
            episode_id, key = new_key(broken)
            response = await client.post("/chat/completions", json=HI, headers=auth(key))
            error = await assert_error(response, 500, "inference engine failed", "EngineClosedError")
            assert error["type"] == "server_error"
            assert broken.store.calls(episode_id) == []
            health = await client.get(str(client.base_url).removesuffix("/v1/") + "/health")
            assert health.status_code == 200
    finally:
        await broken.aclose()
    await assert_still_serving(gateway, http)


async def test_a_key_only_writes_into_its_own_episode(gateway: Gateway, http: httpx.AsyncClient) -> None:
    episode_a, key_a = new_key(gateway)
    episode_b, key_b = new_key(gateway)
    # Naming another episode in the body changes nothing: the episode comes from the key alone.
    sneaky = {**HI, "episode_id": episode_b, "metadata": {"episode_id": episode_b}, "user": episode_b}
    for _ in range(2):
        response = await http.post("/chat/completions", json=sneaky, headers=auth(key_a))
        assert response.status_code == 200
    assert [c.episode_id for c in gateway.store.calls(episode_a)] == [episode_a, episode_a]
    assert gateway.store.calls(episode_b) == []
    assert (await http.post("/chat/completions", json=HI, headers=auth(key_b))).status_code == 200
    assert [c.seq for c in gateway.store.calls(episode_b)] == [0]


async def test_key_for_an_episode_missing_from_the_store_is_409(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    _, key = new_key(gateway, add_episode=False)
    response = await http.post("/chat/completions", json=HI, headers=auth(key))
    await assert_error(response, 409, "not in the store")
    await assert_still_serving(gateway, http)


async def test_unreachable_or_refusing_debug_endpoint_is_502(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    closed.close()
    endpoints = {
        "could not reach": OpenAIEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m"),
        # the gateway itself as upstream, with a key it does not know: that 401 is not the agent's fault
        "answered 401": OpenAIEndpoint(base_url=gateway.base_url or "", api_key="ajet-wrong", model="m"),
    }
    for fragment, endpoint in endpoints.items():
        episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
        gateway.store.add_episode(episode)
        binding = KeyBinding(episode_id=episode.episode_id, trainable=False, debug_endpoint=endpoint)
        key = gateway.keys.issue(binding)
        response = await http.post("/chat/completions", json=HI, headers=auth(key))
        await assert_error(response, 502, fragment)
        assert gateway.store.calls(episode.episode_id) == []
    await assert_still_serving(gateway, http)
