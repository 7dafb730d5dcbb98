"""`AjetTuner`: where a workflow gets its models. One tuner per episode.

Every `tuner.as_<...>()` method comes from a registered adapter (built-in or third-party alike):
`as_raw_openai_sdk_client()` and `as_oai_baseurl_apikey()` from the `openai_sdk` plugin, `as_<name>_model()` from
any other adapter, and `as_model(framework=...)` for whichever the config's `framework:` names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ajet.core.adapter import Adapter
from ajet.core.gateway.keys import KeyBinding, OpenAIEndpoint
from ajet.core.handle import ModelHandle
from ajet.core.plugins import PluginError, PluginRegistry

if TYPE_CHECKING:
    import openai

    from ajet.core.gateway.app import Gateway

DEFAULT_AGENT = "default"


class AjetTuner:
    def __init__(
        self,
        *,
        episode_id: str,
        gateway: Gateway,
        registry: PluginRegistry,
        trainable_targets: list[str] | None = None,
        framework: str | None = None,
        model_name: str = "ajet-policy",
        seed: int | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        self.episode_id = episode_id
        self._gateway = gateway
        self._registry = registry
        self._trainable_targets = trainable_targets
        self._framework = framework
        self._model_name = model_name
        self._seed = seed
        self._sampling = sampling
        self._handles: dict[tuple[str, str, int], ModelHandle] = {}

    # -- the generic entry -------------------------------------------------------------------------------------

    @property
    def framework(self) -> str | None:
        """The config's `framework:` (what `as_model()` uses by default), or None when it is not set."""
        return self._framework

    def adapter(self, framework: str | None = None) -> Adapter:
        """The registered adapter for `framework` (default: the config's). Raises PluginError naming what to do
        when no framework is set or none of that name is installed."""
        name = framework or self._framework
        if name is None:
            raise PluginError(
                "no framework given and none set in the config: add e.g. `framework: openai_sdk` to the config. "
                f"Adapters found: {', '.join(sorted(self._registry.adapters))}"
            )
        return self._registry.adapter(name)

    def is_trainable(self, target_tag: str) -> bool:
        """Whether agents with this tag are trained in this run: the config's `trainable_targets` if set, else the
        workflow's (None trains every tag)."""
        return self._trainable_targets is None or target_tag in self._trainable_targets

    def adapters(self) -> list[Adapter]:
        """Every registered adapter, built-in and third-party, in name order."""
        return [self._registry.adapters[name].value for name in sorted(self._registry.adapters)]

    def as_model(self, framework: str | None = None, **kwargs: Any) -> Any:
        """The model object for `framework` (default: the config's `framework:`)."""
        if framework is None and self._framework is None:
            raise PluginError(
                "tuner.as_model() needs a framework: pass framework='openai_sdk' (or another adapter) or set "
                f"`framework:` in the config. Adapters found: {', '.join(sorted(self._registry.adapters))}"
            )
        return self._call_adapter(self.adapter(framework), **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if not method.startswith("as_"):
            raise AttributeError(method)
        adapter = self._registry.adapter_for_method(method)
        if adapter is None:
            methods = sorted(m for r in self._registry.adapters.values() for m in r.value.tuner_methods())
            raise AttributeError(
                f"AjetTuner has no method {method!r}: no installed adapter provides it. Available: "
                f"{', '.join(methods)}. A framework ajet does not ship needs its plugin package installed."
            )
        return functools.partial(self._call_adapter, adapter)

    # -- what every adapter call goes through ------------------------------------------------------------------

    def handle(
        self, agent_name: str | None = None, target_tag: str | None = None, debug_model: Any = None
    ) -> ModelHandle:
        """The gateway identity of one agent in this episode. The same agent always gets the same key."""
        agent = agent_name or DEFAULT_AGENT
        tag = target_tag or agent
        cache_key = (agent, tag, id(debug_model))
        if cache_key in self._handles:
            return self._handles[cache_key]
        trainable = self.is_trainable(tag)
        endpoint = _as_endpoint(debug_model)
        binding = KeyBinding(
            episode_id=self.episode_id,
            agent_name=agent,
            target_tag=tag,
            trainable=trainable,
            debug_endpoint=endpoint if not trainable else None,
            sampling=self._sampling,
            seed=None if self._seed is None else self._seed + 15_485_863 * len(self._handles),
        )
        handle = ModelHandle(
            episode_id=self.episode_id,
            agent_name=agent,
            target_tag=tag,
            trainable=trainable,
            api_key=self._gateway.keys.issue(binding),
            model_name=self._model_name,
            debug_model=None if endpoint is not None else debug_model,
            gateway=self._gateway,
        )
        self._handles[cache_key] = handle
        return handle

    def _call_adapter(
        self,
        adapter: Adapter,
        agent_name: str | None = None,
        target_tag: str | None = None,
        debug_model: Any = None,
        **framework_kwargs: Any,
    ) -> Any:
        missing = adapter.missing_modules()
        if missing:
            raise PluginError(
                f"the {adapter.name!r} adapter needs {', '.join(missing)}, which is not installed: "
                f"{adapter.install_hint()}"
            )
        handle = self.handle(agent_name, target_tag, debug_model)
        if not handle.trainable and handle.debug_model is not None:
            # A native model object of the framework, given for an agent that is not trained: use it as is.
            return handle.debug_model
        return adapter.make_model(handle, **framework_kwargs)

    if TYPE_CHECKING:  # the built-in adapters' methods, for editors and type checkers

        def as_raw_openai_sdk_client(
            self, agent_name: str | None = None, target_tag: str | None = None, debug_model: Any = None
        ) -> openai.AsyncOpenAI: ...

        def as_oai_baseurl_apikey(
            self, agent_name: str | None = None, target_tag: str | None = None, debug_model: Any = None
        ) -> Any: ...

        def as_agentscope_model(
            self,
            agent_name: str | None = None,
            target_tag: str | None = None,
            debug_model: Any = None,
            **model_kwargs: Any,
        ) -> Any: ...  # agentscope.model.OpenAIChatModel (1.x or 2.x, whichever is installed)

        def as_langchain_model(
            self,
            agent_name: str | None = None,
            target_tag: str | None = None,
            debug_model: Any = None,
            **model_kwargs: Any,
        ) -> Any: ...  # langchain_openai.ChatOpenAI, a BaseChatModel

        def as_openai_agents_model(
            self,
            agent_name: str | None = None,
            target_tag: str | None = None,
            debug_model: Any = None,
            **model_kwargs: Any,
        ) -> Any: ...  # agents.OpenAIChatCompletionsModel

        def as_strands_model(
            self,
            agent_name: str | None = None,
            target_tag: str | None = None,
            debug_model: Any = None,
            **model_kwargs: Any,
        ) -> Any: ...  # strands.models.openai.OpenAIModel


def _as_endpoint(debug_model: Any) -> OpenAIEndpoint | None:
    if isinstance(debug_model, OpenAIEndpoint):
        return debug_model
    if isinstance(debug_model, dict) and "base_url" in debug_model:
        return OpenAIEndpoint.model_validate(debug_model)
    return None
