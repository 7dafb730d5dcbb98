"""The `langchain` plugin: LangChain's own `ChatOpenAI`, bound to the episode through the gateway.

model = tuner.as_langchain_model(temperature=0.7)   # a langchain_openai.ChatOpenAI (a BaseChatModel)
agent = langchain.agents.create_agent(model, tools=[add], system_prompt="...")
out = await agent.ainvoke({"messages": [{"role": "user", "content": "What is 2 + 3?"}]})

It works wherever a `BaseChatModel` does: `bind_tools`, `with_structured_output`, LangGraph nodes. Keyword
arguments go to `ChatOpenAI` and override the defaults set here. Requests always use Chat Completions
(`use_responses_api=False`) and are never retried (`max_retries=0`). Async calls (`ainvoke`, `astream`) use the
in-process transport. Sync calls (`invoke`) use the same ASGI app, run on a private event loop in one helper
thread, so no socket is opened and `invoke` also works inside a running loop. It blocks that loop while it
waits, so prefer `ainvoke` in a workflow.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Any

import httpx

from ajet.adapters.langchain.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import IN_PROCESS_BASE_URL, ModelHandle
from ajet.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _helper_loop() -> asyncio.AbstractEventLoop:
    """The event loop that serves sync requests. It runs in one daemon thread, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="ajet-langchain-sync", daemon=True).start()
        return _loop


def _forget_loop_after_fork() -> None:  # a forked child has the loop object but not its thread
    global _loop
    _loop = None


os.register_at_fork(after_in_child=_forget_loop_after_fork)


class SyncGatewayTransport(httpx.BaseTransport):
    """A sync httpx transport that sends each request to the gateway's ASGI app on the helper loop."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run_coroutine_threadsafe(send(), _helper_loop()).result()


def make_chat_model(handle: ModelHandle, **chat_openai_kwargs: Any) -> ChatOpenAI:
    from langchain_openai import ChatOpenAI

    sync_client = httpx.Client(
        transport=SyncGatewayTransport(handle.gateway.app),
        base_url=IN_PROCESS_BASE_URL,
        headers={"Authorization": f"Bearer {handle.api_key}"},
    )
    params: dict[str, Any] = {
        "model": handle.model_name,
        "base_url": IN_PROCESS_BASE_URL,
        "api_key": handle.api_key,
        "http_async_client": handle.http_client(),
        "http_client": sync_client,
        "use_responses_api": False,
        "max_retries": 0,
    }
    return ChatOpenAI(**{**params, **chat_openai_kwargs})


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="langchain",
            make_model=make_chat_model,
            run_react=run_react,
            requires=("langchain_openai", "langchain_core"),
            extra="langchain",
            description="langchain_openai.ChatOpenAI bound to the episode (in-process)",
        )
    )
