"""The gateway end to end: the official openai client, in-process (ASGI transport) and over loopback HTTP,
against the real TransformersEngine serving the tiny model; every answered call recorded consistently."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import IN_PROCESS_BASE_URL, Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding, OpenAIEndpoint
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.schemas import ChatCompletionRequest
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Completion, Episode, LabeledTask, SamplingParams

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
    }
]
HI = [{"role": "user", "content": "What is 2+3?"}]


def make_gateway(engine: TransformersEngine, model_name: str = "ajet-policy") -> Gateway:
    backend = EngineChatBackend(
        engine, ChatRenderer(engine.tokenizer), HermesToolParser(), SamplingParams(max_tokens=6)
    )
    return Gateway(backend, MemoryStore(), model_name=model_name)


@pytest.fixture(scope="module")
def gateway(engine: TransformersEngine) -> Iterator[Gateway]:
    gateway = make_gateway(engine)
    asyncio.run(gateway.start_http())  # the server runs in its own thread and loop
    yield gateway
    asyncio.run(gateway.aclose())


def new_key(gateway: Gateway, **binding: Any) -> tuple[str, str]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    key = gateway.keys.issue(KeyBinding(episode_id=episode.episode_id, **binding))
    return episode.episode_id, key


def in_process(gateway: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=key, base_url=IN_PROCESS_BASE_URL, http_client=gateway.http_client(key), max_retries=0
    )


def over_http(gateway: Gateway, key: str) -> openai.AsyncOpenAI:
    assert gateway.base_url is not None
    return openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)


def renderer(gateway: Gateway) -> ChatRenderer:
    backend = gateway.backend
    assert isinstance(backend, EngineChatBackend)
    return backend.renderer


def tokenizer_of(gateway: Gateway) -> Any:
    return renderer(gateway).tokenizer


def root_url(gateway: Gateway) -> str:
    assert gateway.base_url is not None
    return gateway.base_url.removesuffix("/v1")


def assert_consistent(gateway: Gateway, episode_id: str, tokenizer: Any) -> None:
    for seq, call in enumerate(gateway.store.calls(episode_id)):
        assert call.seq == seq and call.episode_id == episode_id
        assert call.completion_ids is not None and call.logprobs is not None and call.prompt_ids
        assert len(call.completion_ids) == len(call.logprobs) > 0
        assert tokenizer.decode(call.completion_ids, skip_special_tokens=True) == call.completion_text
        assert all(lp <= 0.0 for lp in call.logprobs)
        expected = renderer(gateway).render(call.messages, call.tools)
        assert call.prompt_ids == expected


@pytest.mark.parametrize("transport", ["in_process", "http"])
async def test_openai_client_non_streaming(gateway: Gateway, transport: str) -> None:
    episode_id, key = new_key(gateway, agent_name="solver", target_tag="math")
    client = in_process(gateway, key) if transport == "in_process" else over_http(gateway, key)
    response = await client.chat.completions.create(
        model="whatever", messages=HI, max_tokens=5, temperature=0.7, seed=3, logprobs=True, top_logprobs=2
    )
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == "ajet-policy"
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None and 1 <= response.usage.completion_tokens <= 5
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert len(choice.logprobs.content) == response.usage.completion_tokens

    (call,) = gateway.store.calls(episode_id)
    assert (call.agent_name, call.target_tag, call.trainable) == ("solver", "math", True)
    assert call.messages == HI and call.tools is None
    assert call.completion_text == choice.message.content
    assert call.response == {"role": "assistant", "content": choice.message.content}
    assert call.finish_reason == choice.finish_reason
    assert response.usage.prompt_tokens == len(call.prompt_ids or [])
    assert [t.logprob for t in choice.logprobs.content] == call.logprobs
    assert (
        call.sampling["max_tokens"] == 5
        and call.sampling["temperature"] == 0.7
        and call.sampling["seed"] == 3
    )
    assert call.latency_s > 0
    assert_consistent(gateway, episode_id, tokenizer_of(gateway))


@pytest.mark.parametrize("transport", ["in_process", "http"])
async def test_openai_client_streaming(gateway: Gateway, transport: str) -> None:
    episode_id, key = new_key(gateway)
    client = in_process(gateway, key) if transport == "in_process" else over_http(gateway, key)
    stream = await client.chat.completions.create(
        model="m", messages=HI, stream=True, stream_options={"include_usage": True}, max_completion_tokens=4
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    (call,) = gateway.store.calls(episode_id)
    assert text == call.completion_text
    assert finish == [call.finish_reason]
    assert chunks[-1].usage.completion_tokens == len(call.completion_ids or []) <= 4


async def test_raw_sse_over_loopback(gateway: Gateway) -> None:
    _, key = new_key(gateway)
    async with httpx.AsyncClient(base_url=gateway.base_url or "") as http:
        async with http.stream(
            "POST",
            "/chat/completions",
            json={"messages": HI, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {p["object"] for p in payloads} == {"chat.completion.chunk"}
    assert "usage" not in payloads[-1]  # include_usage not asked


async def test_request_with_tools_renders_and_records(gateway: Gateway) -> None:
    episode_id, key = new_key(gateway)
    client = in_process(gateway, key)
    response = await client.chat.completions.create(model="m", messages=HI, tools=TOOLS, tool_choice="auto")
    (call,) = gateway.store.calls(episode_id)
    assert call.tools == TOOLS
    prompt = tokenizer_of(gateway).decode(call.prompt_ids)
    assert "<tools>" in prompt and '"name": "add"' in prompt
    # The random tiny model almost never writes a tool call; whatever it wrote went through the parser.
    message = response.choices[0].message
    assert call.response["content"] == message.content
    assert bool(call.response.get("tool_calls")) == bool(message.tool_calls)
    assert_consistent(gateway, episode_id, tokenizer_of(gateway))


def test_tool_call_completion_becomes_openai_tool_calls(gateway: Gateway) -> None:
    """The parse path on a completion that holds a tool call (the tiny model will not write one by itself)."""
    backend = gateway.backend
    assert isinstance(backend, EngineChatBackend)
    tokenizer = backend.engine.tokenizer
    text = 'Adding.<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    completion = Completion(ids=ids, logprobs=[-0.5] * len(ids), text=text, finish_reason="stop")
    request = ChatCompletionRequest.model_validate({"messages": HI, "tools": TOOLS, "logprobs": True})
    result = backend.result_from(request, [1, 2, 3], SamplingParams(), completion)
    assert result.finish_reason == "tool_calls"
    assert result.message["content"] == "Adding."
    (call,) = result.message["tool_calls"]
    assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert result.completion_text == text and result.completion_ids == ids
    assert result.logprobs_block is not None and result.logprobs_block["content"][-1]["token"] == "<|im_end|>"
    # tool_choice "none": no parsing at all
    none = ChatCompletionRequest.model_validate({"messages": HI, "tools": TOOLS, "tool_choice": "none"})
    assert backend.result_from(none, [1], SamplingParams(), completion).message == {
        "role": "assistant",
        "content": text,
    }
    # cut off by the token limit: the calls are returned, the reason stays "length"
    cut = completion.model_copy(update={"finish_reason": "length"})
    assert backend.result_from(request, [1], SamplingParams(), cut).finish_reason == "length"


async def test_follow_up_turn_renders_the_remembered_raw_completion(gateway: Gateway) -> None:
    episode_id, key = new_key(gateway)
    raw = 'Adding.<tool_call>{"name":"add","arguments":{"a":2,"b":3}}</tool_call>'
    gateway.keys.remember_completion(episode_id, ["call_abc"], raw)
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": "Adding.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "5"},
    ]
    await in_process(gateway, key).chat.completions.create(model="m", messages=messages, tools=TOOLS)
    (call,) = gateway.store.calls(episode_id)
    expected = renderer(gateway).render(messages, TOOLS, known_completions={"call_abc": raw})
    assert call.prompt_ids == expected
    assert raw in tokenizer_of(gateway).decode(call.prompt_ids)


async def test_concurrent_episodes_record_in_order_and_apart(gateway: Gateway) -> None:
    keys = [new_key(gateway) for _ in range(8)]

    async def episode(index: int, episode_id: str, key: str) -> None:
        client = in_process(gateway, key) if index % 2 else over_http(gateway, key)
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"episode {index}"}]
        for turn in range(3):
            response = await client.chat.completions.create(model="m", messages=messages, max_tokens=3)
            messages += [
                {"role": "assistant", "content": response.choices[0].message.content},
                {"role": "user", "content": f"turn {turn}"},
            ]

    await asyncio.gather(*(episode(i, ep, key) for i, (ep, key) in enumerate(keys)))
    for index, (episode_id, _) in enumerate(keys):
        calls = gateway.store.calls(episode_id)
        assert [c.seq for c in calls] == [0, 1, 2]
        assert all(c.messages[0]["content"] == f"episode {index}" for c in calls)
        assert_consistent(gateway, episode_id, tokenizer_of(gateway))


async def test_models_health_and_unknown_route(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url or "") as http:
        models = (await http.get("/models")).json()
        assert models["data"][0]["id"] == "ajet-policy"
        assert (await http.get(root_url(gateway) + "/health")).json() == {"status": "ok"}
        missing = await http.get("/nope")
        assert missing.status_code == 404 and "error" in missing.json()
        wrong_method = await http.get("/chat/completions")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    _, key = new_key(gateway)
    listed = await in_process(gateway, key).models.list()
    assert [m.id for m in listed.data] == ["ajet-policy"]


async def test_loopback_round_trip_is_not_delayed_by_nagle(gateway: Gateway) -> None:
    """Without TCP_NODELAY every response waits ~40 ms for a delayed ACK; a round trip should take ~1 ms."""
    async with httpx.AsyncClient(base_url=root_url(gateway)) as http:
        await http.get("/health")
        timings = []
        for _ in range(9):
            started = time.perf_counter()
            await http.get("/health")
            timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.02, timings


async def test_start_http_is_idempotent_and_loopback_only(
    gateway: Gateway, engine: TransformersEngine
) -> None:
    assert await gateway.start_http() == gateway.base_url
    assert gateway.base_url is not None and gateway.base_url.startswith("http://127.0.0.1:")
    other = make_gateway(engine)
    with pytest.raises(ValueError, match="not a loopback address"):
        await other.start_http("0.0.0.0")
    assert other.base_url is None
    url = await other.start_http("localhost")
    assert url.startswith("http://127.0.0.1:") and url != gateway.base_url
    await other.stop_http()
    assert other.base_url is None
    await other.stop_http()  # stopping twice is harmless


async def test_debug_endpoint_is_served_by_a_remote_openai_server(
    gateway: Gateway, engine: TransformersEngine
) -> None:
    """An agent that is not trained, with a debug endpoint: its calls go to that endpoint (here a second real
    gateway on loopback, standing for any OpenAI-compatible server); they are counted, not recorded."""
    remote = make_gateway(engine, model_name="remote-model")
    remote_url = await remote.start_http()
    try:
        remote_episode, remote_key = new_key(remote)
        endpoint = OpenAIEndpoint(base_url=remote_url, api_key=remote_key, model="remote-model")
        episode_id, key = new_key(
            gateway, agent_name="opponent", target_tag="villager", trainable=False, debug_endpoint=endpoint
        )

        plain = await in_process(gateway, key).chat.completions.create(model="m", messages=HI, max_tokens=3)
        streamed = await over_http(gateway, key).chat.completions.create(
            model="m", messages=HI, max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in streamed]
        assert plain.model == "remote-model"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 3

        remote_calls = remote.store.calls(remote_episode)
        assert len(remote_calls) == 2 and gateway.store.calls(episode_id) == []
        assert gateway.keys.untrained_calls(episode_id) == {"villager": 2}
        assert plain.choices[0].message.content == remote_calls[0].completion_text
        # not trainable and no endpoint: served by the policy, and not recorded either
        policy_episode, policy_key = new_key(gateway, trainable=False)
        reply = await in_process(gateway, policy_key).chat.completions.create(
            model="m", messages=HI, max_tokens=2
        )
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        assert gateway.store.calls(policy_episode) == []
        assert sum(gateway.keys.untrained_calls(policy_episode).values()) == 1
    finally:
        await remote.aclose()
