"""What a framework adapter is: a name, the pip extra that installs its framework, and one factory that turns a
tuner's `ModelHandle` into the framework's native model object (or client, or base_url + api_key)."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Adapter:
    #: the value of `framework:` in a config and of `tuner.as_model(framework=...)`
    name: str
    #: `make_model(handle, **framework_kwargs)` -> the framework's native model object
    make_model: Callable[..., Any]
    #: tuner methods that call this adapter; default `as_<name>_model`
    method_names: tuple[str, ...] = ()
    #: modules that must be importable for the framework to work (checked without importing them)
    requires: tuple[str, ...] = ()
    #: the extra that installs the framework: `pip install 'ajet[<extra>]'` (built-in adapters)
    extra: str | None = None
    #: what to pip install for the framework, for adapters outside ajet, e.g. "pydantic-ai-slim[openai]"
    install: str | None = None
    description: str = ""
    #: keyword arguments of `tuner.as_*` that the tuner consumes itself (agent identity), never passed on
    handle_kwargs: tuple[str, ...] = field(default=("agent_name", "target_tag", "debug_model"), repr=False)
    #: `run_react(model, spec: ajet.core.react.ReActSpec) -> final answer text`: how this framework's own agent
    #: runs a ReAct loop, for the built-in `ajet.workflows.react:ReActWorkflow`; None if the adapter has none
    run_react: Callable[..., Awaitable[str]] | None = field(default=None, repr=False)
    #: `count_native(model, on_call) -> model`: for an agent that is not trained and whose `debug_model` is a
    #: native model object of this framework, the same model with every call reported to `on_call(error)`
    #: (`error`: None, or the exception the call raised, which still propagates), so ajet can count calls it
    #: does not serve. None: the native model is used as given, and its calls are invisible to ajet.
    count_native: Callable[[Any, Callable[[BaseException | None], None]], Any] | None = field(
        default=None, repr=False
    )
    #: `import_hint(exc) -> str | None`: what to install when a workflow's import of this framework failed
    #: (e.g. code written for another major version); None when the error is not about this framework
    import_hint: Callable[[ImportError], str | None] | None = field(default=None, repr=False)

    def tuner_methods(self) -> tuple[str, ...]:
        return self.method_names or (f"as_{self.name}_model",)

    def missing_modules(self) -> list[str]:
        return [module for module in self.requires if importlib.util.find_spec(module) is None]

    def install_hint(self) -> str:
        if self.extra:
            return f"pip install 'ajet[{self.extra}]'"
        if self.install:
            return f"pip install '{self.install}'"
        return "pip install " + " ".join(self.requires)
