"""`stream_options: {"include_usage": true}` over loopback HTTP, as OpenAI sends it: every chunk carries
`"usage": null` and a last chunk with `choices: []` carries the usage, before `[DONE]`; without it (absent or
false) no chunk has usage. Checked with the official openai SDK and with LangChain's ChatOpenAI, whose
`stream_usage=True` is what sends the option to a server that is not api.openai.com."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, LlmCall, SamplingParams

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def gateway(tiny_model_and_tokenizer: tuple[Any, Any]) -> Iterator[Gateway]:
    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    backend = EngineChatBackend(
        engine, ChatRenderer(tokenizer), HermesToolParser(), SamplingParams(max_tokens=4)
    )
    gateway = Gateway(backend, MemoryStore())
    asyncio.run(gateway.start_http())
    yield gateway
    asyncio.run(gateway.aclose())
    engine.close()


def new_key(gateway: Gateway) -> tuple[str, str]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    return episode.episode_id, gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))


def only_call(gateway: Gateway, episode_id: str) -> LlmCall:
    (call,) = gateway.store.calls(episode_id)
    return call


@asynccontextmanager
async def chat_openai(gateway: Gateway, key: str, **kwargs: Any) -> AsyncIterator[ChatOpenAI]:
    # Its own httpx client: ChatOpenAI otherwise shares one cached client per base_url across event loops, and
    # each test runs on a new loop.
    async with httpx.AsyncClient(timeout=30) as client:
        yield ChatOpenAI(
            base_url=gateway.base_url,
            api_key=key,
            model="m",
            max_retries=0,
            http_async_client=client,
            **kwargs,
        )


async def test_openai_sdk_gets_a_final_usage_chunk_when_asked(gateway: Gateway) -> None:
    episode_id, key = new_key(gateway)
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    await client.close()
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.choices and c.usage is None for c in body)
    call = only_call(gateway, episode_id)
    assert last.usage.prompt_tokens == len(call.prompt_ids or [])
    assert last.usage.completion_tokens == len(call.completion_ids or []) <= 4
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}])
async def test_openai_sdk_gets_no_usage_unless_asked(gateway: Gateway, stream_options: Any) -> None:
    _, key = new_key(gateway)
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    extra = {} if stream_options is None else {"stream_options": stream_options}
    stream = await client.chat.completions.create(model="m", messages=HI, stream=True, **extra)
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def test_raw_sse_order_with_include_usage(gateway: Gateway) -> None:
    _, key = new_key(gateway)
    body = {"messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=gateway.base_url or "", timeout=30) as http:
        response = await http.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    lines = [line for line in response.text.split("\n") if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    # OpenAI's shape: "usage": null on every chunk but the last, which has no choices.
    assert all("usage" in p and p["usage"] is None and p["choices"] for p in payloads[:-1])
    assert payloads[-1]["choices"] == [] and set(payloads[-1]["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


async def test_langchain_chat_openai_stream_usage(gateway: Gateway) -> None:
    episode_id, key = new_key(gateway)
    full: AIMessageChunk | None = None
    with_input_tokens = 0
    async with chat_openai(gateway, key, stream_usage=True) as model:
        async for chunk in model.astream("Say hi."):
            assert isinstance(chunk, AIMessageChunk)
            # langchain-tests' rule: exactly one chunk sets input_tokens, or the sum would count them twice.
            with_input_tokens += bool(chunk.usage_metadata and chunk.usage_metadata["input_tokens"])
            full = chunk if full is None else full + chunk
    assert full is not None and full.usage_metadata is not None and with_input_tokens == 1
    call = only_call(gateway, episode_id)
    assert full.usage_metadata["input_tokens"] == len(call.prompt_ids or [])
    assert full.usage_metadata["output_tokens"] == len(call.completion_ids or [])
    assert full.usage_metadata["total_tokens"] == len(call.prompt_ids or []) + len(call.completion_ids or [])
    assert full.content == call.completion_text


async def test_langchain_without_stream_usage_sends_no_option_and_gets_no_usage(gateway: Gateway) -> None:
    # ChatOpenAI turns stream_usage on by itself only for api.openai.com: pointed at any other base_url (this
    # gateway, vLLM) it asks for usage only when told to, as in the test above.
    _, key = new_key(gateway)
    async with chat_openai(gateway, key) as model:
        chunks = [chunk async for chunk in model.astream("Say hi.")]
    assert chunks and all(c.usage_metadata is None for c in chunks)
