"""The hooks a plugin may implement. Each is a `register_*(register)` hook in the style of simonw/llm: the plugin
calls `register(...)` once per thing it adds. Built-ins use exactly these hooks, from the project's own entry
points, so a third-party plugin has every power a built-in has.

A plugin is a module (or object) with `@hookimpl`-decorated functions, found through the `ajet` entry-point group:

    [project.entry-points.ajet]
    my_framework = "my_package.ajet_plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ajet")
hookimpl = pluggy.HookimplMarker("ajet")


@hookspec
def register_adapters(register: Callable[[Any], None]) -> None:
    """Register framework adapters: `register(Adapter(name=..., make_model=..., ...))`."""


@hookspec
def register_engines(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register inference engine factories: `register("name", factory)`; `factory(config) -> engine`."""


@hookspec
def register_tool_parsers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register tool-call parsers: `register("name", parser_factory)`; the factory takes no arguments."""


@hookspec
def register_judgers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register judgers by name: `register("name", fn_or_class)`; see `ajet.core.judgers`."""


@hookspec
def register_algorithms(register: Callable[[str, str, Callable[..., Any]], None]) -> None:
    """Register trainer functions: `register(kind, name, fn)` with kind one of "advantage_estimator",
    "policy_loss", "aggregation", "aggregation_denominator", "kl_estimator" (see `ajet.trainer.algorithms`).
    An aggregation needs its denominator under the same name: `fn(mask, sample_weights) -> scalar`, what it
    divides by, so a mini-batch splits into micro-batches exactly (as every built-in aggregation does)."""


@hookspec
def register_task_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register procedural task generators by name: `register("name", fn)`; `fn(**kwargs)` yields tasks."""


@hookspec
def register_weight_syncs(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ways to move trained weights into an inference engine: `register("name", factory)`;
    `factory(engine, config) -> ajet.trainer.weight_sync.WeightSync`. Chosen by `engine.weight_sync`."""


@hookspec
def register_rollout_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register places to run episodes: `register("name", factory)`; `factory(config, registry) ->
    ajet.core.rollout_backends.RolloutBackend`. Chosen by `rollout.backend` ('local' is built in)."""
