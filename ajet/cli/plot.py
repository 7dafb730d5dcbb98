"""`ajet plot RUN_DIR`: a run's curves from its metrics.jsonl, in the terminal, or as an SVG file for a README."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ajet.cli.errors import fail
from ajet.cli.svg_chart import line_chart

DEFAULT_METRICS = ["rollout/reward_mean", "val/success_rate"]
SPARKS = "▁▂▃▄▅▆▇█"


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the run directory of an `ajet train` run")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):  # only a run killed mid-write may leave a partial (last) line
                raise
    return rows


def series_of(rows: list[dict[str, float]], metric: str) -> list[tuple[float, float]]:
    return [(float(row["step"]), float(row[metric])) for row in rows if metric in row and "step" in row]


def sparkline(values: list[float]) -> str:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in values)


def plot_command(
    run_dir: Path = typer.Argument(..., help="the run directory (it holds metrics.jsonl)"),
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="a metric to plot, repeatable (default: reward and validation success)"
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="write an SVG chart here"),
    title: str | None = typer.Option(None, help="the chart's title (default: the run directory's name)"),
) -> None:
    """Show a run's curves: one sparkline per metric, or an SVG chart with --out."""
    console = Console()
    try:
        rows = read_metrics(run_dir)
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        fail(console, "error", exc)
    metrics = metric or DEFAULT_METRICS
    series = {name: series_of(rows, name) for name in metrics}
    missing = [name for name, values in series.items() if not values]
    if len(missing) == len(series):
        known = sorted({k for row in rows for k in row if k not in ("step", "time")})
        fail(console, "error", f"no values for {', '.join(missing)}; metrics in this run: {', '.join(known)}")
    for name, values in series.items():
        if not values:
            console.print(f"{name}: (no values)", markup=False)
            continue
        ys = [y for _, y in values]
        console.print(
            f"{name:<28} {sparkline(ys)}  first {ys[0]:.3g}  last {ys[-1]:.3g}  "
            f"min {min(ys):.3g}  max {max(ys):.3g}  ({len(ys)} points)",
            soft_wrap=True,
            markup=False,
        )
    if out is not None:
        present = {name: values for name, values in series.items() if values}
        out.write_text(line_chart(title or run_dir.name, present), encoding="utf-8")
        console.print(f"wrote {out}", markup=False)
