"""`AjetTuner`: where a workflow gets its models. One tuner per episode.

Every `tuner.as_<...>()` method comes from a registered adapter (built-in or third-party alike):
`as_raw_openai_sdk_client()` and `as_oai_baseurl_apikey()` from the `openai_sdk` plugin, `as_<name>_model()` from
any other adapter, and `as_model(framework=...)` for whichever the config's `framework:` names.

ASTuner's forms of the same thing, for the config's `framework:` (e.g. `framework: agentscope`):

- `model=tuner` (the tuner itself as the agent's model): it stands for `tuner.as_model()`, made on first use;
  calling the tuner calls that model, and reading an attribute the tuner does not have reads the model's.
- `tuner.register_model(role, default_model=m)` then `tuner.get_model(role)`: `tuner.as_model(agent_name=role,
  target_tag=role, debug_model=m)`, trained when `role` is in `trainable_targets`, else served by `m`.
- `ModelTuner` (importable from `ajet`) is another name of `AjetTuner`.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from ajet.core.adapter import Adapter
from ajet.core.episode_access import AgentKeySource, EpisodeAccess, HttpAgentKeys
from ajet.core.gateway.connection import GatewayConnection
from ajet.core.gateway.keys import FAILED_SUFFIX, AgentKeyRequest, OpenAIEndpoint
from ajet.core.handle import ModelHandle
from ajet.core.plugins import PluginError, PluginRegistry

if TYPE_CHECKING:
    import openai

DEFAULT_AGENT = "default"
# The tuner's own public attribute; any other public attribute set on a tuner that stands for a model goes to it.
_OWN_ATTRIBUTES = frozenset({"episode_id"})

logger = logging.getLogger(__name__)


class AjetTuner:
    def __init__(
        self,
        access: EpisodeAccess,
        registry: PluginRegistry,
        *,
        connection: GatewayConnection | None = None,
        agent_keys: AgentKeySource | None = None,
    ) -> None:
        """A tuner for the episode `access` describes. Beside the gateway, pass its in-process `connection`
        and `agent_keys` (see `ajet.core.rollout.local_tuner`); anywhere else both default to HTTP at
        `access.base_url`."""
        self.episode_id = access.episode_id
        self._access = access
        self._registry = registry
        self._connection = connection or GatewayConnection.over_http(access.base_url)
        self._agent_keys = agent_keys or HttpAgentKeys(access.base_url, access.episode_key)
        self._trainable_targets = access.trainable_targets
        self._framework = access.framework
        self._model_name = access.model_name
        self._handles: dict[tuple[str, str, int], ModelHandle] = {}
        self._registered: dict[str, Any] = {}  # role -> default model (`register_model`)
        self._itself: Any = None  # the model the tuner stands for when it is passed as one (`model=tuner`)
        self._failures_logged: set[str] = set()
        # calls of native debug models (which never reach the gateway), per tag, like KeyRegistry.untrained_calls
        self._native_untrained: dict[str, int] = {}

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

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        if not method.startswith("as_"):
            return self._model_attribute(method)
        adapter = self._registry.adapter_for_method(method)
        if adapter is None:
            methods = sorted(m for r in self._registry.adapters.values() for m in r.value.tuner_methods())
            raise AttributeError(
                f"AjetTuner has no method {method!r}: no installed adapter provides it. Available: "
                f"{', '.join(methods)}. A framework ajet does not ship needs its plugin package installed."
            )
        return functools.partial(self._call_adapter, adapter)

    # -- ASTuner's forms: roles registered with a default model, and the tuner itself as the model -------------

    def register_model(self, role: str, default_model: Any = None) -> None:
        """Declare an agent role and the model that serves it when it is not trained (`role` not in
        `trainable_targets`): a native model of the config's framework, an `OpenAIEndpoint`, or None (the policy,
        untrained). Registering a role again replaces its default model. Then `get_model(role)`."""
        if not isinstance(role, str) or not role:
            raise ValueError(f"register_model(role=...): a role is a non-empty string, got {role!r}")
        self._registered[role] = default_model

    def get_model(self, role: str, **framework_kwargs: Any) -> Any:
        """The model for an agent of a registered role: `as_model(agent_name=role, target_tag=role,
        debug_model=<its default model>)`, so trained when `role` is in `trainable_targets`. Keyword arguments go
        to the framework's model, as with `as_model`; `agent_name=` names the agent (default: the role)."""
        if role not in self._registered:
            known = ", ".join(map(repr, self._registered)) or "none yet"
            raise KeyError(
                f"get_model({role!r}): that role is not registered; call "
                f"model_tuner.register_model({role!r}, default_model=...) first (registered: {known})"
            )
        framework_kwargs.setdefault("agent_name", role)
        adapter = self._config_adapter(f"model_tuner.get_model({role!r})")
        return self._call_adapter(
            adapter, target_tag=role, debug_model=self._registered[role], **framework_kwargs
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`model=tuner`: a call of the tuner is a call of the model it stands for (see the module docstring)."""
        return self._model_itself("__call__")(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        # A framework may set its model's attributes (AgentScope 1.x: `model.stream = False`): once the tuner
        # stands for a model, they are that model's.
        if not name.startswith("_") and name not in _OWN_ATTRIBUTES and self._itself is not None:
            setattr(self._itself, name, value)
        else:
            object.__setattr__(self, name, value)

    def _model_attribute(self, name: str) -> Any:
        model = self._model_itself(name)
        try:
            return getattr(model, name)
        except AttributeError:
            raise AttributeError(
                f"AjetTuner has no attribute {name!r}, nor has the {type(model).__name__} it stands for when "
                "passed as a model (model=tuner)"
            ) from None

    def _model_itself(self, attribute: str) -> Any:
        if self._itself is None:
            # AttributeError, so that `hasattr(tuner, ...)` stays a question and the message still says why
            try:
                adapter = self._config_adapter("passing the tuner itself as a model (model=tuner)")
                model = self._call_adapter(adapter)
            except PluginError as exc:
                raise AttributeError(f"AjetTuner has no attribute {attribute!r}: {exc}") from None
            object.__setattr__(self, "_itself", model)
        return self._itself

    def _config_adapter(self, what: str) -> Adapter:
        if self._framework is None:
            raise PluginError(
                f"{what} makes a model of the config's framework, and none is set: add e.g. "
                f"`framework: agentscope` to the config. Adapters found: {', '.join(sorted(self._registry.adapters))}"
            )
        return self.adapter()

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
        endpoint = _as_endpoint(debug_model)
        # The gateway decides, from the episode's grant, whether this tag is trained and which seed it gets.
        key = self._agent_keys.issue(
            AgentKeyRequest(agent_name=agent, target_tag=tag, debug_endpoint=endpoint)
        )
        handle = ModelHandle(
            episode_id=self.episode_id,
            agent_name=agent,
            target_tag=tag,
            trainable=key.trainable,
            api_key=key.api_key,
            model_name=self._model_name,
            debug_model=None if endpoint is not None else debug_model,
            connection=self._connection,
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
            # A native model object of the framework, for an agent that is not trained: it calls its own endpoint,
            # so the gateway never sees its calls; the adapter wraps it so that they are counted all the same.
            if adapter.count_native is None:
                return handle.debug_model
            return adapter.count_native(handle.debug_model, functools.partial(self._native_call, handle))
        return adapter.make_model(handle, **framework_kwargs)

    def native_untrained_calls(self) -> dict[str, int]:
        """Calls of untrained agents' native debug models, per tag, with "<tag> (failed)" for the failed ones
        (the gateway counts the untrained calls it serves itself; the episode's `untrained_calls` adds both)."""
        return dict(self._native_untrained)

    def _native_call(self, handle: ModelHandle, error: BaseException | None) -> None:
        counts = self._native_untrained
        counts[handle.target_tag] = counts.get(handle.target_tag, 0) + 1
        if error is not None:
            failed = handle.target_tag + FAILED_SUFFIX
            counts[failed] = counts.get(failed, 0) + 1
        if error is not None and handle.target_tag not in self._failures_logged:
            # Once per tag and episode: a workflow that catches the error (and e.g. scores the game -0.1) would
            # otherwise hide that its untrained agents never got an answer.
            self._failures_logged.add(handle.target_tag)
            logger.warning(
                "episode %s: the debug_model of %s (%s, not trained) failed: %s: %s; counted in the episode's "
                "untrained_calls as %r",
                self.episode_id,
                handle.agent_name,
                handle.target_tag,
                type(error).__name__,
                error,
                handle.target_tag + FAILED_SUFFIX,
            )

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


#: ASTuner's name for the tuner (`execute(self, task, model_tuner: ModelTuner)`)
ModelTuner = AjetTuner


def _as_endpoint(debug_model: Any) -> OpenAIEndpoint | None:
    if isinstance(debug_model, OpenAIEndpoint):
        return debug_model
    if isinstance(debug_model, dict) and "base_url" in debug_model:
        return OpenAIEndpoint.model_validate(debug_model)
    return None
