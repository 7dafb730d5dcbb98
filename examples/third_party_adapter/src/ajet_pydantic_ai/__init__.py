"""An ajet plugin for Pydantic AI: `tuner.as_pydantic_ai_model()` returns Pydantic AI's own `OpenAIChatModel`,
bound to the episode through ajet's gateway.

    from pydantic_ai import Agent

    agent = Agent(tuner.as_pydantic_ai_model(), instructions="...", tools=[calculator])
    result = await agent.run(question)

ajet finds this module through the `ajet` entry point in this package's pyproject.toml and calls its
`register_adapters` hook. Importing it must stay cheap: `ajet plugins` and every run import it, whether or not a
workflow uses Pydantic AI, so the framework is imported only inside `make_pydantic_ai_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ajet.core.adapter import Adapter
from ajet.core.hookspecs import hookimpl

if TYPE_CHECKING:  # for type checkers only: importing these at run time would load the framework eagerly
    from pydantic_ai.models.openai import OpenAIChatModel

    from ajet.core.handle import ModelHandle

#: the name of the gateway in Pydantic AI's message history (see OpenAICompatibleProvider's `name`)
PROVIDER_NAME = "ajet"


def make_pydantic_ai_model(handle: ModelHandle, **model_kwargs: Any) -> OpenAIChatModel:
    """Pydantic AI's `OpenAIChatModel` over the in-process gateway client of this episode's agent.

    `model_kwargs` go to `OpenAIChatModel`, e.g. `settings=ModelSettings(temperature=0.7)` or `profile=...`.
    """
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

    # OpenAICompatibleProvider, not OpenAIProvider: Pydantic AI turns on OpenAI-only request features for
    # OpenAIProvider, and the gateway serves a local model, not OpenAI. The client is ajet's: it carries the
    # agent's own key (which is how the gateway knows whose call it records) and reaches the gateway in-process,
    # without a socket.
    provider = OpenAICompatibleProvider(PROVIDER_NAME, openai_client=handle.openai_client())
    return OpenAIChatModel(handle.model_name, provider=provider, **model_kwargs)


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="pydantic_ai",  # `framework: pydantic_ai` in a config; the tuner method is as_pydantic_ai_model
            make_model=make_pydantic_ai_model,
            # checked with importlib.util.find_spec, without importing: `ajet plugins` shows whether it is there
            requires=("pydantic_ai", "openai"),
            # `extra` names an extra of ajet itself; a third-party framework has none, so `install` gives the
            # requirement that the "framework not installed" error tells users to pip install
            install="pydantic-ai-slim[openai]>=2.64",
            description="pydantic_ai OpenAIChatModel bound to the episode (in-process)",
        )
    )
