"""The `openai_agents` plugin: the OpenAI Agents SDK's own `OpenAIChatCompletionsModel`, bound to the episode.

model = tuner.as_openai_agents_model()   # agents.OpenAIChatCompletionsModel over the in-process gateway client
agent = Agent(name="calc", instructions="...", model=model, tools=[add])
result = await Runner.run(agent, "What is 2 + 3?")

Requests use Chat Completions (never the Responses API) through an `openai.AsyncOpenAI` bound to the gateway
in-process. Sampling settings belong to the agent, as usual: `Agent(..., model_settings=ModelSettings(...))`.
Keyword arguments go to `OpenAIChatCompletionsModel` (e.g. `should_replay_reasoning_content`).

Tracing: the SDK exports traces to api.openai.com by default. The first call of this adapter turns that off with
`agents.set_tracing_disabled(True)`, unless the environment variable `OPENAI_AGENTS_DISABLE_TRACING` is set; then
the user's setting stands. To trace anyway, set `OPENAI_AGENTS_DISABLE_TRACING=0`, or call
`agents.set_tracing_disabled(False)` after the first `as_openai_agents_model()`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ajet.adapters.openai_agents.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import ModelHandle
from ajet.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from agents import OpenAIChatCompletionsModel

_tracing_configured = False


def _disable_tracing_once() -> None:
    global _tracing_configured
    if _tracing_configured:
        return
    _tracing_configured = True
    if "OPENAI_AGENTS_DISABLE_TRACING" not in os.environ:
        import agents

        agents.set_tracing_disabled(True)


def make_agents_model(handle: ModelHandle, **model_kwargs: Any) -> OpenAIChatCompletionsModel:
    from agents import OpenAIChatCompletionsModel

    _disable_tracing_once()
    return OpenAIChatCompletionsModel(
        model=handle.model_name, openai_client=handle.openai_client(), **model_kwargs
    )


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="openai_agents",
            make_model=make_agents_model,
            run_react=run_react,
            requires=("agents",),
            extra="openai-agents",
            description="agents.OpenAIChatCompletionsModel bound to the episode (in-process)",
        )
    )
