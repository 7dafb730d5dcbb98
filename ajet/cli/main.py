"""The `ajet` command line."""

from __future__ import annotations

import typer

from ajet.cli import debug, export, plot, plugins, serve, train, view, worker
from ajet.cli import eval as eval_cli
from ajet.cli.tokenize import tokenize_command

app = typer.Typer(
    name="ajet",
    help="Train the LLM inside your agent with reinforcement learning, whatever its framework.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("debug")(debug.debug_command)
app.command("plugins")(plugins.plugins_command)
app.command("train")(train.train_command)
app.command("serve")(serve.serve_command)
app.command("worker")(worker.worker_command)
app.command("eval")(eval_cli.eval_command)
app.command("export")(export.export_command)
app.command("plot")(plot.plot_command)
app.command("tokenize")(tokenize_command)
app.command("view")(view.view_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
