"""Plugin discovery: a pluggy manager built by a factory (no global state), and the registry it fills.

pm = make_plugin_manager()          # loads every `ajet` entry point, built-ins included
registry = collect_registry(pm)     # adapters, engines, tool parsers, task generators by name
"""

from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ajet.core import hookspecs
from ajet.core.adapter import Adapter

ENTRY_POINT_GROUP = "ajet"


class PluginError(RuntimeError):
    pass


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`" (did you mean 'langchain'?)"` for a misspelled name, or "" when nothing is close."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class PluginSource:
    """Where a registered thing came from: the plugin's name and the distribution that installed it."""

    plugin: str
    package: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.package is None:
            return f"{self.plugin} (registered directly)"
        return f"{self.package} {self.version}"


@dataclass(frozen=True)
class Registered:
    name: str
    value: Any
    source: PluginSource


@dataclass(frozen=True)
class PluginLoadFailure:
    """An `ajet` entry point whose module raised on import: skipped, and shown by `ajet plugins`."""

    plugin: str
    package: str
    version: str
    error: str

    def describe(self) -> str:
        return f"plugin {self.plugin!r} from {self.package} {self.version} failed to import: {self.error}"


class AjetPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers the entry points it could not load."""

    def __init__(self) -> None:
        super().__init__("ajet")
        self.load_failures: list[PluginLoadFailure] = []


@dataclass
class PluginRegistry:
    #: entry points that failed to import (their hooks were not run)
    load_failures: list[PluginLoadFailure] = field(default_factory=list)
    adapters: dict[str, Registered] = field(default_factory=dict)
    engines: dict[str, Registered] = field(default_factory=dict)
    tool_parsers: dict[str, Registered] = field(default_factory=dict)
    task_sources: dict[str, Registered] = field(default_factory=dict)
    judgers: dict[str, Registered] = field(default_factory=dict)
    weight_syncs: dict[str, Registered] = field(default_factory=dict)
    rollout_backends: dict[str, Registered] = field(default_factory=dict)
    #: (kind, name) -> function, for the trainer's algorithm registries
    algorithms: dict[str, Registered] = field(default_factory=dict)

    def adapter(self, name: str) -> Adapter:
        try:
            return self.adapters[name].value
        except KeyError:
            found = ", ".join(sorted(self.adapters)) or "none"
            failed = "".join(f"\n  {failure.describe()}" for failure in self.load_failures)
            raise PluginError(
                f"no adapter named {name!r}{did_you_mean(name, self.adapters)}; adapters found: {found}. A "
                "third-party framework needs its plugin package installed (it registers itself through the "
                "'ajet' entry-point group)." + (f"\nPlugins that failed to load:{failed}" if failed else "")
            ) from None

    def adapter_for_method(self, method: str) -> Adapter | None:
        for registered in self.adapters.values():
            if method in registered.value.tuner_methods():
                return registered.value
        return None

    def engine_factory(self, name: str) -> Callable[..., Any]:
        return self._get(self.engines, name, "engine", "engine.kind").value

    def weight_sync_factory(self, name: str) -> Callable[..., Any]:
        return self._get(self.weight_syncs, name, "weight sync", "engine.weight_sync").value

    def rollout_backend_factory(self, name: str) -> Callable[..., Any]:
        return self._get(self.rollout_backends, name, "rollout backend", "rollout.backend").value

    def tool_parser_factory(self, name: str) -> Callable[[], Any]:
        return self._get(self.tool_parsers, name, "tool parser", "gateway.tool_parser").value

    @staticmethod
    def _get(table: dict[str, Registered], name: str, what: str, field_name: str) -> Registered:
        try:
            return table[name]
        except KeyError:
            found = ", ".join(sorted(table)) or "none"
            raise PluginError(
                f"{field_name}: unknown {what} {name!r}{did_you_mean(name, table)}; write one of: {found}"
            ) from None


def make_plugin_manager(*, load_entrypoints: bool = True, plugins: Iterable[Any] = ()) -> AjetPluginManager:
    """A fresh plugin manager: the hookspecs, every `ajet` entry point (when asked), then `plugins`.

    An entry point whose module fails to import is skipped and kept in `pm.load_failures` (with a warning), so
    one broken third-party package does not take every other framework down with it. Raises PluginError when a
    plugin implements a hook that does not exist (a misspelled `register_*`).
    """
    pm = AjetPluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        _block_broken_entrypoints(pm)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}. Known hooks: {', '.join(_hook_names())}") from exc
    return pm


def _block_broken_entrypoints(pm: AjetPluginManager) -> None:
    # Import each entry point first (a module imports once, so pluggy's own load below costs nothing more);
    # block those that raise, which pluggy then skips.
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRY_POINT_GROUP or pm.is_blocked(entry_point.name):
                continue
            try:
                entry_point.load()
            except Exception as exc:
                failure = PluginLoadFailure(
                    entry_point.name, dist.metadata["Name"], dist.version, f"{type(exc).__name__}: {exc}"
                )
                pm.load_failures.append(failure)
                pm.set_blocked(entry_point.name)
                warnings.warn(failure.describe(), stacklevel=3)


def _hook_names() -> list[str]:
    return sorted(name for name in vars(hookspecs) if name.startswith("register_"))


def _sources(pm: pluggy.PluginManager) -> dict[int, PluginSource]:
    sources: dict[int, PluginSource] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin) or repr(plugin)
        sources[id(plugin)] = PluginSource(name, dist.metadata["Name"], dist.version)
    return sources


def collect_registry(pm: pluggy.PluginManager) -> PluginRegistry:
    """Call every `register_*` hook, remembering which plugin registered what. Duplicate names are an error."""
    registry = PluginRegistry(load_failures=list(getattr(pm, "load_failures", [])))
    sources = _sources(pm)

    def run(hook_name: str, table: dict[str, Registered], make: Callable[..., tuple[str, Any]]) -> None:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            source = sources.get(id(impl.plugin), PluginSource(impl.plugin_name))

            def register(*args: Any, _source: PluginSource = source, **kwargs: Any) -> None:
                name, value = make(*args, **kwargs)
                if name in table:
                    raise PluginError(
                        f"{hook_name}: {name!r} is registered twice, by {table[name].source.describe()} "
                        f"and by {_source.describe()}; uninstall one of them"
                    )
                table[name] = Registered(name, value, _source)

            impl.function(register=register)

    def adapter_entry(adapter: Adapter) -> tuple[str, Any]:
        if not isinstance(adapter, Adapter):
            raise PluginError(f"register_adapters: expected an ajet.core.adapter.Adapter, got {adapter!r}")
        return adapter.name, adapter

    run("register_adapters", registry.adapters, adapter_entry)
    run("register_engines", registry.engines, lambda name, factory: (name, factory))
    run("register_tool_parsers", registry.tool_parsers, lambda name, factory: (name, factory))
    run("register_task_sources", registry.task_sources, lambda name, fn: (name, fn))
    run("register_judgers", registry.judgers, lambda name, fn: (name, fn))
    run("register_weight_syncs", registry.weight_syncs, lambda name, factory: (name, factory))
    run("register_rollout_backends", registry.rollout_backends, lambda name, factory: (name, factory))
    run("register_algorithms", registry.algorithms, lambda kind, name, fn: (f"{kind}:{name}", fn))
    _check_method_clashes(registry)
    return registry


def _check_method_clashes(registry: PluginRegistry) -> None:
    owners: dict[str, str] = {}
    for name, registered in registry.adapters.items():
        for method in registered.value.tuner_methods():
            if method in owners:
                raise PluginError(f"adapters {owners[method]!r} and {name!r} both claim tuner.{method}()")
            owners[method] = name


def load_registry(plugins: Iterable[Any] = ()) -> PluginRegistry:
    return collect_registry(make_plugin_manager(plugins=plugins))


def distribution_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
