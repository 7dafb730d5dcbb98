"""`ajet worker --server URL -c CONFIG`: run the config's `Workflow` on episodes an `ajet serve` run hands out."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.console import Console

from ajet.cli.errors import fail
from ajet.core.config import ConfigError, load_config
from ajet.core.loading import load_workflow_factory
from ajet.core.plugins import PluginError, load_registry
from ajet.core.preflight import check_framework
from ajet.core.remote_protocol import SERVER_TOKEN_ENV


def worker_command(
    server: str = typer.Option(..., "--server", help="the `ajet serve` address, e.g. http://10.0.0.5:8765"),
    config_path: Path = typer.Option(..., "--config", "-c", help="a config naming the workflow to run"),
    token: str | None = typer.Option(
        None, "--token", envvar=SERVER_TOKEN_ENV, help=f"the server's token (default ${SERVER_TOKEN_ENV})"
    ),
    concurrency: int = typer.Option(
        16,
        "--concurrency",
        "-n",
        min=1,
        help="episodes run at once (the server caps them at rollout.max_concurrency)",
    ),
    name: str | None = typer.Option(None, "--name", help="recorded with each episode (default host:pid)"),
    max_episodes: int | None = typer.Option(None, "--max-episodes", min=1, help="stop after this many"),
    connect_timeout_s: float = typer.Option(
        600.0, "--connect-timeout", min=1, help="seconds to wait for a server that is not up (yet)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show log messages"),
) -> None:
    """Claim episodes from the server and run them with the config's workflow until the run finishes. Only the
    config's workflow (and framework) matter here: the server decides the rest."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    console = Console()
    from ajet.remote.client import EpisodeClient
    from ajet.remote.worker import run_worker

    try:
        config = load_config(config_path)
        make_workflow = load_workflow_factory(config)
        registry = load_registry()
        check_framework(config.framework, registry)
        client = EpisodeClient(server, token, name=name)
    except (ConfigError, PluginError, FileNotFoundError, ValueError) as exc:
        fail(console, "configuration error", exc)
    console.print(f"worker {client.name}: claiming episodes from {client.base_url}", markup=False)
    try:
        with console.status("waiting for episodes") as status:

            def show(stats: object) -> None:
                status.update(f"worker {client.name}: {stats.describe()}")  # type: ignore[attr-defined]

            stats = asyncio.run(
                run_worker(
                    client,
                    make_workflow,
                    registry,
                    concurrency=concurrency,
                    connect_timeout_s=connect_timeout_s,
                    max_episodes=max_episodes,
                    on_episode=show,
                )
            )
    except ConnectionError as exc:
        fail(console, "connection error", exc)
    finally:
        client.close()
    console.print(f"worker {client.name}: done, {stats.describe()}", markup=False)
