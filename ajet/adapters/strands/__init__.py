"""The `strands` plugin: Strands Agents' own `OpenAIModel`, reusing an in-process client bound to the episode.

    model = tuner.as_strands_model(temperature=0.7)      # keyword arguments become the request's `params`
    agent = strands.Agent(model=model, tools=[add], system_prompt="...", callback_handler=None)
    result = await agent.invoke_async(question)

Two differences from a plain `OpenAIModel` (see `model.py`): a completion cut at `max_tokens` ends the turn
with the cut text instead of raising `MaxTokensReachedException` (pass `on_max_tokens="raise"` for Strands'
behaviour), and OpenAI-style messages (`{"role": "user", "content": "text"}`) fail with a clear message. Convert
those with `to_strands_messages`:

    from ajet.adapters.strands import to_strands_messages
    agent = strands.Agent(model=model, messages=to_strands_messages(openai_messages), callback_handler=None)

Always pass the model: a Strands `Agent` without one builds a Bedrock model, which contacts the AWS
instance-metadata service (169.254.169.254) as soon as it is constructed.

The model is given `client=` (one `openai.AsyncOpenAI` reused for every request), never `client_args=`: with
`client_args` Strands opens and closes a new client per request, and an in-process http client passed that way
is closed after the first. `strands-agents` is installed without its `[openai]` extra, which pins `openai<3`;
`strands.models.openai` works with openai 3.x.
"""

from __future__ import annotations

from typing import Any

from ajet.adapters.strands.messages import to_strands_messages
from ajet.adapters.strands.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import ModelHandle
from ajet.core.hookspecs import hookimpl

__all__ = ["make_strands_model", "to_strands_messages"]


def make_strands_model(
    handle: ModelHandle,
    *,
    params: dict[str, Any] | None = None,
    stream: bool = True,
    on_max_tokens: str = "end_turn",
    **kwargs: Any,
) -> Any:
    """A `strands.models.openai.OpenAIModel` on the gateway. `params` and any other keyword arguments are sent
    with every request (OpenAI SDK keyword arguments: put non-standard fields in `extra_body`).
    `on_max_tokens`: "end_turn" (a cut-off completion ends the turn) or "raise" (`MaxTokensReachedException`)."""
    from ajet.adapters.strands.model import TunerStrandsModel

    return TunerStrandsModel(
        client=handle.openai_client(),
        model_id=handle.model_name,
        params={**(params or {}), **kwargs},
        stream=stream,
        on_max_tokens=on_max_tokens,
    )


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="strands",
            make_model=make_strands_model,
            run_react=run_react,
            requires=("strands",),
            extra="strands",
            description="Strands Agents OpenAIModel with an in-process client bound to the episode",
        )
    )
