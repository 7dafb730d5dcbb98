"""`ajet view [RUN_DIR ...]`: a local web page of runs, their curves, episodes and trained tokens (read-only)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer
from rich.console import Console

from ajet.cli.errors import fail

DEFAULT_PORT = 8766


def view_command(
    run_dirs: list[Path] | None = typer.Argument(
        None, help="run directories, or folders of runs (searched a few levels deep); default: runs"
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=0, max=65535, help="the port (0: a free one)"),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="the address to serve on; a non-loopback one needs --allow-remote"
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="serve on a non-loopback --host: anyone who reaches it reads the runs (prompts, configs, errors)",
    ),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="open the page in a web browser"),
) -> None:
    """Serve a web page of runs: curves (several runs on one chart), the episode table with filters, and each
    episode's calls and trained tokens. Read-only; a run still training shows its new steps as they come."""
    from ajet.core.gateway.app import is_loopback, listening_socket

    console = Console()
    roots = run_dirs or [Path("runs")]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        fail(
            console,
            "error",
            f"no such directory: {', '.join(missing)}; pass run directories (or the folder of runs, "
            "default runs/) to ajet view",
        )
    if host == "localhost":
        host = "127.0.0.1"
    if not allow_remote and not is_loopback(host):
        fail(
            console,
            "error",
            f"--host {host} is not a loopback address: anyone who reaches it could read the runs (prompts, "
            "configs, errors). Pass --allow-remote to serve on it anyway (a network you trust), or use 127.0.0.1",
        )
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        fail(
            console,
            "error",
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass --port N (0: a free one)",
        )
    import uvicorn

    from ajet.viewer import create_app
    from ajet.viewer.runs import find_run_dirs

    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
    count = len(find_run_dirs(roots))
    console.print(
        f"ajet view: {count} run{'s' if count != 1 else ''} in {', '.join(map(str, roots))} at {url} "
        "(Ctrl-C to stop)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(create_app(roots), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
