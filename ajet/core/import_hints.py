"""An ImportError from a workflow, with what to install: each registered adapter may recognise its framework's
imports (e.g. AgentScope 1.x code on AgentScope 2.x) and name the extra that runs the code as written."""

from __future__ import annotations

from ajet.core.plugins import PluginRegistry, collect_registry, make_plugin_manager


def install_hint(exc: BaseException, registry: PluginRegistry | None = None) -> str | None:
    """The first adapter's hint for `exc` or the ImportError that caused it (loading wraps it), or None.
    Without a registry, the installed plugins' (on an error path only: building one loads every plugin)."""
    causes = _import_errors(exc)
    if not causes:
        return None
    if registry is None:
        try:
            registry = collect_registry(make_plugin_manager())
        except Exception:  # a broken plugin must not hide the user's own import error
            return None
    for cause in causes:
        for name in sorted(registry.adapters):
            hint_for = registry.adapters[name].value.import_hint
            hint = hint_for(cause) if hint_for is not None else None
            if hint:
                return hint
    return None


def with_install_hint(exc: BaseException, registry: PluginRegistry | None = None) -> str:
    """`str(exc)`, followed by what to install when an adapter knows."""
    hint = install_hint(exc, registry)
    return f"{exc}. {hint[0].upper()}{hint[1:]}" if hint else str(exc)


def _import_errors(exc: BaseException | None) -> list[ImportError]:
    found: list[ImportError] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError):
            found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found
