"""The `langchain` plugin: LangChain's own `ChatOpenAI`, bound to the episode through the gateway.

model = tuner.as_langchain_model(temperature=0.7)   # a langchain_openai.ChatOpenAI (a BaseChatModel)
agent = langchain.agents.create_agent(model, tools=[add], system_prompt="...")
out = await agent.ainvoke({"messages": [{"role": "user", "content": "What is 2 + 3?"}]})

It works wherever a `BaseChatModel` does: `bind_tools`, `with_structured_output`, LangGraph nodes. Keyword
arguments go to `ChatOpenAI` and override the defaults set here. Requests always use Chat Completions
(`use_responses_api=False`) and are never retried (`max_retries=0`). Beside the gateway, async calls (`ainvoke`,
`astream`) use the in-process transport and sync calls (`invoke`) the same ASGI app, run on a private event
loop in one helper thread, so no socket is opened and `invoke` also works inside a running loop (it blocks
that loop while it waits, so prefer `ainvoke` in a workflow). In a worker process both go over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ajet.adapters.langchain.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import ModelHandle
from ajet.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI


def make_chat_model(handle: ModelHandle, **chat_openai_kwargs: Any) -> ChatOpenAI:
    from langchain_openai import ChatOpenAI

    params: dict[str, Any] = {
        "model": handle.model_name,
        "base_url": handle.client_base_url,
        "api_key": handle.api_key,
        "http_async_client": handle.http_client(),
        "http_client": handle.sync_http_client(),
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
