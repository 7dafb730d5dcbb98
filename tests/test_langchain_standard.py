"""LangChain's own standard integration tests (`langchain-tests`) for `ChatOpenAI` pointed at the gateway.

The gateway serves the tiny random model over loopback HTTP, exactly as an agent's `ChatOpenAI` would reach it
in training. What this suite can check with a model that writes noise is the protocol: invoke, stream, batch,
usage, stop sequences, and everything that constrained decoding guarantees whatever the model (a forced tool
call, schema-valid structured output). Tests that need the model to *choose* well (call the right tool of its
own accord, answer "2" to "1+1", read a tool's result) are listed in `NEEDS_A_CAPABLE_MODEL` and xfail, each
with the reason; nothing else is excused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("langchain_openai")

from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.app import Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask, SamplingParams

_SERVED: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def served_gateway(tiny_model_and_tokenizer: tuple[Any, Any]) -> Iterator[None]:
    model, tokenizer = tiny_model_and_tokenizer
    engine = TransformersEngine(model, tokenizer)
    backend = EngineChatBackend(engine, ChatRenderer(tokenizer), HermesToolParser(), SamplingParams())
    gateway = Gateway(backend, MemoryStore())
    base_url = asyncio.run(gateway.start_http())
    episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
    gateway.store.add_episode(episode)
    _SERVED.update(base_url=base_url, api_key=gateway.keys.issue(KeyBinding(episode_id=episode.episode_id)))
    yield
    asyncio.run(gateway.aclose())
    engine.close()


class TestChatOpenAIOnGateway(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # 48 tokens keep the suite fast on a CPU; a tool call to `my_adder_tool` takes about 25.
        return {
            "model": "ajet-policy",
            "base_url": _SERVED["base_url"],
            "api_key": _SERVED["api_key"],
            "max_tokens": 48,
            "max_retries": 0,
            "timeout": 120,
        }

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True
