"""The model's context is a limit the gateway enforces, as OpenAI and vLLM do: a request whose prompt plus
`max_tokens` / `max_completion_tokens` does not fit is refused with a 400 naming the limit (nothing generates),
while a default limit (no `max_tokens` sent, or the episode's sampling default) is clamped to what fits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, SamplingParams

CONTEXT = 48  # a small context, so that "up to the limit" generates a few tokens only
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(engine: TransformersEngine) -> Iterator[Gateway]:
    renderer = ChatRenderer(engine.tokenizer)
    sampling = SamplingParams(max_tokens=256, temperature=0)  # the default is larger than any room left
    backend = EngineChatBackend(engine, renderer, HermesToolParser(), sampling, max_context_tokens=CONTEXT)
    gateway = Gateway(backend, MemoryStore())
    asyncio.run(gateway.start_http())
    yield gateway
    asyncio.run(gateway.aclose())


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url or "", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def prompt_tokens(gateway: Gateway) -> int:
    backend = gateway.backend
    assert isinstance(backend, EngineChatBackend)
    return len(backend.renderer.render(HI))


def new_key(gateway: Gateway, **binding: Any) -> tuple[str, dict[str, str]]:
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    key = gateway.keys.issue(KeyBinding(episode_id=episode.episode_id, **binding))
    return episode.episode_id, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("excess", [1, 10**12])
async def test_a_limit_beyond_the_context_is_400_naming_it(
    gateway: Gateway, http: httpx.AsyncClient, prompt_tokens: int, field: str, excess: int
) -> None:
    episode_id, headers = new_key(gateway)
    wanted = CONTEXT - prompt_tokens + excess
    response = await http.post("/chat/completions", json={"messages": HI, field: wanted}, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] == (
        f"This model's maximum context length is {CONTEXT} tokens. However, you requested "
        f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the messages, {wanted} in the completion). "
        f"Please reduce the length of the messages or completion ({field} may be at most "
        f"{CONTEXT - prompt_tokens} for these messages)."
    )
    assert error["code"] == "context_length_exceeded" and error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert gateway.store.calls(episode_id) == []  # refused before generating: nothing recorded


async def test_max_completion_tokens_wins_over_max_tokens(
    gateway: Gateway, http: httpx.AsyncClient, prompt_tokens: int
) -> None:
    _, headers = new_key(gateway)
    room = CONTEXT - prompt_tokens
    body = {"messages": HI, "max_tokens": room + 5, "max_completion_tokens": 2}
    response = await http.post("/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 2
    body = {"messages": HI, "max_tokens": 2, "max_completion_tokens": room + 5}
    response = await http.post("/chat/completions", json=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "max_completion_tokens"


async def test_a_limit_that_just_fits_and_no_limit_both_generate_to_the_context(
    gateway: Gateway, http: httpx.AsyncClient, prompt_tokens: int
) -> None:
    episode_id, headers = new_key(gateway)
    room = CONTEXT - prompt_tokens
    exact = await http.post("/chat/completions", json={"messages": HI, "max_tokens": room}, headers=headers)
    # No max_tokens: the configured default (256) is clamped to the room left, not refused.
    default = await http.post("/chat/completions", json={"messages": HI}, headers=headers)
    for response in (exact, default):
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["prompt_tokens"] == prompt_tokens
        assert response.json()["usage"]["completion_tokens"] <= room
    assert [len(c.completion_ids or []) <= room for c in gateway.store.calls(episode_id)] == [True, True]


async def test_the_episodes_default_max_tokens_is_clamped_not_refused(
    gateway: Gateway, http: httpx.AsyncClient, prompt_tokens: int
) -> None:
    # A sampling default of the episode (the tuner's binding) is not the client's request: it is clamped.
    _, headers = new_key(gateway, sampling={"max_tokens": 10_000, "temperature": 0.0})
    response = await http.post("/chat/completions", json={"messages": HI}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= CONTEXT - prompt_tokens
    # ... while the client's own limit beyond the context still is.
    refused = await http.post(
        "/chat/completions", json={"messages": HI, "max_tokens": 10_000}, headers=headers
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"


@pytest.mark.parametrize("extra_words", [0, 40])
async def test_a_prompt_that_leaves_no_room_is_400(
    gateway: Gateway, http: httpx.AsyncClient, prompt_tokens: int, extra_words: int
) -> None:
    episode_id, headers = new_key(gateway)
    backend = gateway.backend
    assert isinstance(backend, EngineChatBackend)
    # Grow the message until the prompt alone is exactly the context (0 words over), or well beyond it.
    words = 1
    while len(backend.renderer.render([{"role": "user", "content": "hi " * words}])) < CONTEXT:
        words += 1
    messages = [{"role": "user", "content": "hi " * (words + extra_words)}]
    length = len(backend.renderer.render(messages))
    assert length >= CONTEXT
    response = await http.post("/chat/completions", json={"messages": messages}, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] == (
        f"This model's maximum context length is {CONTEXT} tokens. However, your messages resulted in "
        f"{length} tokens, which leaves no room for a completion. Please reduce the length of the messages."
    )
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert gateway.store.calls(episode_id) == []


async def test_the_openai_sdk_raises_bad_request_with_the_limit(gateway: Gateway) -> None:
    _, headers = new_key(gateway)
    key = headers["Authorization"].removeprefix("Bearer ")
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=HI, max_tokens=1_000_000_000_000)  # type: ignore[arg-type]
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "max_tokens"
    assert f"maximum context length is {CONTEXT} tokens" in caught.value.message
    await client.close()
