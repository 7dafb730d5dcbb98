"""A client that disconnects or times out cancels its request: the engine drops it at the next decode step
(its slot is free long before `max_tokens` would have been reached), nothing is recorded, the cancelled call is
counted on the episode, and the next call of the same episode is served and recorded as usual. Over real
loopback HTTP (a socket closed early, the openai SDK timing out while streaming) and in process."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import IN_PROCESS_BASE_URL, Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, SamplingParams

# The tiny random model, greedy, never emits EOS on this prompt: left alone, it would decode all 8000 tokens
# (tens of seconds on a CPU).
LONG = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8000, "temperature": 0}


@pytest.fixture(scope="module")
def gateway(engine: TransformersEngine) -> Iterator[Gateway]:
    backend = EngineChatBackend(
        engine, ChatRenderer(engine.tokenizer), HermesToolParser(), SamplingParams(max_tokens=3)
    )
    gateway = Gateway(backend, MemoryStore())
    asyncio.run(gateway.start_http())
    yield gateway
    asyncio.run(gateway.aclose())


def new_key(gateway: Gateway) -> tuple[str, str]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    return episode.episode_id, gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))


async def wait_until(condition: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def assert_dropped_and_consistent(
    gateway: Gateway, engine: TransformersEngine, episode_id: str, key: str, row: Any
) -> None:
    """The engine let the request go at once, it is counted not recorded, and the episode goes on."""
    took = await wait_until(lambda: engine.active_requests == 0, 3.0, "the engine dropping the request")
    assert took < 3.0 and row.cancelled
    generated = len(row.ids)
    await asyncio.sleep(0.2)
    assert len(row.ids) == generated < LONG["max_tokens"]  # it stopped decoding, far from max_tokens
    await wait_until(lambda: gateway.keys.cancelled_calls(episode_id) == 1, 2.0, "the cancelled call counted")
    assert gateway.store.calls(episode_id) == []
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    response = await client.chat.completions.create(model="m", messages=LONG["messages"], max_tokens=2)
    assert response.choices[0].finish_reason in ("stop", "length")
    assert [c.seq for c in gateway.store.calls(episode_id)] == [0]
    await client.close()


async def running_row(engine: TransformersEngine) -> Any:
    def decoding() -> bool:
        rows = engine._batch.rows
        return engine.active_requests == 1 and len(rows) == 1 and len(rows[0].ids) > 2

    await wait_until(decoding, 10.0, "the request decoding")
    (row,) = engine._batch.rows
    return row


async def test_a_socket_closed_early_cancels_a_non_streaming_request(
    gateway: Gateway, engine: TransformersEngine
) -> None:
    episode_id, key = new_key(gateway)
    assert gateway.base_url is not None
    host, port = gateway.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    body = json.dumps(LONG).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((host, int(port)))
    try:
        sock.sendall(request)
        row = await running_row(engine)
    finally:
        sock.close()  # the client leaves without reading an answer
    await assert_dropped_and_consistent(gateway, engine, episode_id, key, row)


async def test_an_sdk_timeout_cancels_a_streaming_request(
    gateway: Gateway, engine: TransformersEngine
) -> None:
    episode_id, key = new_key(gateway)
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0, timeout=2.0)
    started = asyncio.get_running_loop().create_task(running_row(engine))
    with pytest.raises(openai.APITimeoutError):
        stream = await client.chat.completions.create(model="m", stream=True, **LONG)  # type: ignore[call-overload]
        async for _ in stream:
            pass
    row = await started
    await client.close()
    await assert_dropped_and_consistent(gateway, engine, episode_id, key, row)


async def test_a_cancelled_in_process_caller_cancels_its_request(
    gateway: Gateway, engine: TransformersEngine
) -> None:
    episode_id, key = new_key(gateway)
    client = openai.AsyncOpenAI(
        api_key=key, base_url=IN_PROCESS_BASE_URL, http_client=gateway.http_client(key), max_retries=0
    )
    call = asyncio.get_running_loop().create_task(client.chat.completions.create(model="m", **LONG))  # type: ignore[call-overload]
    row = await running_row(engine)
    call.cancel()  # what an episode timeout does to the workflow's pending call
    with pytest.raises(asyncio.CancelledError):
        await call
    await client.close()
    await assert_dropped_and_consistent(gateway, engine, episode_id, key, row)
