"""`ajet plugins`: what was discovered, from which package, and whether its framework is installed."""

from __future__ import annotations

import json
import warnings

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ajet.cli.errors import fail
from ajet.core.plugins import PluginError, load_registry


def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """List adapters, engines and tool-call parsers found through the 'ajet' entry-point group."""
    console = Console()
    try:
        with warnings.catch_warnings():  # shown in the output below instead
            warnings.simplefilter("ignore")
            registry = load_registry()
    except PluginError as exc:
        fail(console, "plugin error", exc)
    adapters = []
    for name, registered in sorted(registry.adapters.items()):
        adapter = registered.value
        missing = adapter.missing_modules()
        adapters.append(
            {
                "name": name,
                "methods": list(adapter.tuner_methods()),
                "package": registered.source.package,
                "version": registered.source.version,
                "installed": not missing,
                "install": adapter.install_hint() if missing else None,
                "description": adapter.description,
            }
        )
    others = {
        "engines": sorted(registry.engines),
        "tool_parsers": sorted(registry.tool_parsers),
        "task_sources": sorted(registry.task_sources),
        "judgers": sorted(registry.judgers),
        "weight_syncs": sorted(registry.weight_syncs),
        "rollout_backends": sorted(registry.rollout_backends),
        "algorithms": sorted(registry.algorithms),
    }
    failures = [
        {"plugin": f.plugin, "package": f.package, "version": f.version, "error": f.error}
        for f in registry.load_failures
    ]
    if as_json:
        typer.echo(json.dumps({"adapters": adapters, **others, "failed": failures}, indent=2))
        return
    table = Table(title="ajet adapters")
    for column in ("adapter", "tuner methods", "from package", "framework installed"):
        table.add_column(column)
    for row in adapters:
        installed = (
            "[green]yes[/green]" if row["installed"] else f"[yellow]no[/yellow]: {escape(row['install'])}"
        )
        package = f"{row['package']} {row['version']}" if row["package"] else "(registered directly)"
        methods = ", ".join(f"{m}()" for m in row["methods"])
        table.add_row(escape(row["name"]), escape(methods), escape(package), installed)
    console.print(table)
    for title, names in others.items():
        console.print(f"[bold]{title.replace('_', ' ')}:[/bold] {escape(', '.join(names)) or '(none)'}")
    for failure in registry.load_failures:
        console.print(f"[red]failed to load:[/red] {escape(failure.describe())}", soft_wrap=True)
