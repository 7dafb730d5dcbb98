"""`ajet export RUN_DIR --out DIR`: a merged model that `AutoModelForCausalLM.from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ajet.cli.errors import fail


def export_command(
    run_dir: Path = typer.Argument(..., help="a run directory with checkpoints"),
    out: Path = typer.Option(..., "--out", "-o", help="where to write the merged model"),
) -> None:
    """Write the latest checkpoint as a plain Hugging Face model (LoRA adapters merged into the weights)."""
    console = Console()
    from ajet.trainer.export import ExportError, export_run

    try:
        with console.status("exporting ..."):
            path = export_run(run_dir, out)
    except ExportError as exc:
        fail(console, "error", exc)
    console.print(f"wrote {path}", markup=False)
