"""The `agentscope` plugin: AgentScope's own `OpenAIChatModel`, bound in-process to the episode's gateway key.

AgentScope 2.x (the formatter belongs to the model; tools need a permission; see `agentscope.agent.Agent`):

    model = tuner.as_agentscope_model()            # OpenAIChatModel(stream=False, formatter=OpenAIChatFormatter())
    agent = Agent(name="calc", system_prompt="...", model=model, toolkit=Toolkit(tools=[...]))
    msg = await agent.reply(UserMsg(name="user", content=question))

AgentScope 1.x: the same call gives 1.x's `OpenAIChatModel(model_name, api_key, client_kwargs=..., stream=...)`;
the formatter goes to the agent, and `OpenAIChatFormatter()` and `DashScopeChatFormatter()` both work (for text,
the DashScope one writes OpenAI-compatible messages: string content, OpenAI-shaped tool calls and results):

    agent = ReActAgent(name="calc", sys_prompt="...", model=model, formatter=OpenAIChatFormatter(),
                       toolkit=toolkit, memory=InMemoryMemory())
    msg = await agent.reply(Msg("user", question, "user"), structured_model=Answer)   # msg.metadata: the Answer

Keyword arguments go to `OpenAIChatModel` (2.x: `parameters` (an instance or a dict), `formatter`,
`extra_body`, `context_size`, ...; 1.x: `generate_kwargs`, `reasoning_effort`, ...). `stream` defaults to False:
the gateway answers streaming requests too, but it produces the whole completion before sending it. With 1.x,
`stream=True` is refused when the installed openai has `delta.audio`: 1.0.21's stream parser tests
`"data" in delta.audio`, which fails on every chunk (openai 3.x sends `audio=None`).
The gateway records token ids and log-probs itself, so nothing needs to travel back through AgentScope.

ASTuner's forms work with `framework: agentscope` in the config: `model=model_tuner` (the tuner stands for
`as_agentscope_model()`), and `model_tuner.register_model(role, default_model=m)` + `model_tuner.get_model(role)`
(`as_agentscope_model(agent_name=role, target_tag=role, debug_model=m)`).

A native `debug_model` (e.g. `OpenAIChatModel(...)` for an agent that is not trained) calls its own endpoint;
the agent gets a copy that counts its calls and failures in the episode's `untrained_calls` (`native.py`).
A workflow whose AgentScope import fails (1.x code on 2.x, or the reverse) is told which extra to install
(`hints.py`).
"""

from __future__ import annotations

import inspect
from typing import Any

from ajet.adapters.agentscope.hints import agentscope_import_hint
from ajet.adapters.agentscope.native import count_native_calls
from ajet.adapters.agentscope.react import run_react
from ajet.core.adapter import Adapter
from ajet.core.handle import ModelHandle
from ajet.core.hookspecs import hookimpl


def _version() -> str:
    import agentscope

    return str(agentscope.__version__)


def installed_major_version() -> int:
    return int(_version().split(".")[0])


def _client_kwargs(handle: ModelHandle, user: dict[str, Any] | None) -> dict[str, Any]:
    # The gateway does not fail transiently: the openai client's own retries would only hide bugs and
    # multiply with AgentScope's. The http client is what binds the model to this episode, so it always wins.
    return {"max_retries": 0, **(user or {}), "http_client": handle.http_client()}


def make_agentscope_model(handle: ModelHandle, *, stream: bool = False, **kwargs: Any) -> Any:
    """AgentScope's native `OpenAIChatModel` for the installed major version, talking to the gateway."""
    if installed_major_version() >= 2:
        return _make_v2(handle, stream=stream, **kwargs)
    return _make_v1(handle, stream=stream, **kwargs)


def _make_v2(handle: ModelHandle, *, stream: bool, **kwargs: Any) -> Any:
    from agentscope.credential import OpenAICredential
    from agentscope.formatter import OpenAIChatFormatter
    from agentscope.model import OpenAIChatModel

    if isinstance(kwargs.get("parameters"), dict):
        kwargs["parameters"] = OpenAIChatModel.Parameters(**kwargs["parameters"])
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("formatter", OpenAIChatFormatter())
    kwargs["client_kwargs"] = _client_kwargs(handle, kwargs.get("client_kwargs"))
    return OpenAIChatModel(
        credential=OpenAICredential(api_key=handle.api_key, base_url=handle.client_base_url),
        model=handle.model_name,
        stream=stream,
        **kwargs,
    )


def _make_v1(handle: ModelHandle, *, stream: bool, **kwargs: Any) -> Any:
    from agentscope.model import OpenAIChatModel
    from openai.types.chat.chat_completion_chunk import ChoiceDelta

    if stream and "audio" in ChoiceDelta.model_fields:
        raise ValueError(
            f"stream=True does not work with AgentScope {_version()} and this openai release: AgentScope 1.x's "
            "stream parser reads `'data' in delta.audio`, and openai's chunks carry audio=None (TypeError on "
            "the first chunk). Use stream=False (the default): the gateway produces the whole completion "
            "before sending it anyway, so nothing is lost."
        )

    # 1.0.21 names it `client_kwargs` (and still accepts `client_args` with a deprecation warning); older
    # 1.x releases know only `client_args`.
    if "client_kwargs" in inspect.signature(OpenAIChatModel.__init__).parameters:
        key = "client_kwargs"
    else:
        key = "client_args"
    client = _client_kwargs(handle, kwargs.pop("client_kwargs", None) or kwargs.pop("client_args", None))
    client["base_url"] = handle.client_base_url
    kwargs[key] = client
    return OpenAIChatModel(model_name=handle.model_name, api_key=handle.api_key, stream=stream, **kwargs)


@hookimpl
def register_adapters(register: Any) -> None:
    register(
        Adapter(
            name="agentscope",
            make_model=make_agentscope_model,
            run_react=run_react,
            count_native=count_native_calls,
            import_hint=agentscope_import_hint,
            requires=("agentscope",),
            extra="agentscope",
            description="AgentScope OpenAIChatModel (2.x, or 1.x when installed) bound to the episode",
        )
    )
