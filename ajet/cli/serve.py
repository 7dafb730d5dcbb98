"""`ajet serve -c CONFIG`: train as `ajet train` does, with the episodes run by clients that claim them over HTTP
(`ajet worker`, `ajet.remote.EpisodeClient`, or curl): the episode API beside the OpenAI-compatible gateway."""

from __future__ import annotations

from pathlib import Path

import typer

from ajet.cli.overrides import SET_HELP
from ajet.cli.train import run_training

DEFAULT_PORT = 8765


def serve_command(
    config_path: Path | None = typer.Option(None, "--config", "-c", help="the run's YAML config"),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="continue the run in this run directory (unfinished episodes are offered again)",
    ),
    host: str | None = typer.Option(
        None,
        "--host",
        help="the address to serve on (default gateway.host, 127.0.0.1); another interface needs "
        "gateway.allow_remote: true",
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help=f"the port (default gateway.port, or {DEFAULT_PORT})"
    ),
    steps: int | None = typer.Option(None, "--steps", min=1, help="override train.steps"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="override run_dir (default runs/<name>)"),
    set_fields: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    nproc: int | None = typer.Option(
        None, "--nproc", min=1, help="training processes (ranks), e.g. 2: sets train.distributed.nproc"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show log messages"),
) -> None:
    """Train with episodes run anywhere: clients claim them (task, endpoint, keys), report rewards, and the
    trainer trains on them. Clients authenticate with the server token ($AJET_SERVER_TOKEN)."""
    serve: dict[str, object] = {"rollout.backend": "remote", "gateway.http": True}
    if host is not None:
        serve["gateway.host"] = host
    serve["gateway.port"] = (
        port if port is not None else _configured_port(config_path, resume) or DEFAULT_PORT
    )
    run_training(config_path, resume, steps, run_dir, set_fields, nproc, verbose, serve=serve)


def _configured_port(config_path: Path | None, resume: Path | None) -> int | None:
    """gateway.port from the config (or the resumed run's), when it names one (0 picks a free port, which a
    client could not know)."""
    import yaml

    path = resume / "config.yaml" if resume is not None else config_path
    if path is None or not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    gateway = data.get("gateway") if isinstance(data, dict) else None
    port = gateway.get("port") if isinstance(gateway, dict) else None
    return port if isinstance(port, int) and port > 0 else None
