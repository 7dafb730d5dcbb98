"""The tables `ajet eval` prints: the models side by side (with the change from the first), and per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.markup import escape
from rich.table import Table

from ajet.eval.report import EvalReport

Getter = Callable[[EvalReport], float | None]

#: printed under the summary table (as a caption it would wrap to the table's width)
LEGEND = (
    "pass@k: the unbiased estimator 1 - C(n-c,k)/C(n,k) per task, averaged over tasks; success: is_success, "
    "else reward > 0; failed and timed-out episodes count as unsuccessful samples"
)


def summary_table(reports: Sequence[EvalReport]) -> Table:
    first = reports[0]
    title = (
        f"{first.split}: {first.tasks} tasks x {first.k} samples, temperature {first.temperature:g}, "
        f"seed {first.seed}"
    )
    table = Table(title=title)
    table.add_column("metric")
    for report in reports:
        table.add_column(escape(report.label), justify="right")
    for report in reports[1:]:
        name = "Δ" if len(reports) == 2 else f"Δ {report.label}"
        table.add_column(escape(name), justify="right")
    rows: list[tuple[str, Getter, str, bool]] = [
        (f"pass@{k}", _pass_at(k), "{:.3f}", True) for k in range(1, first.k + 1)
    ]
    rows += [
        ("success rate", lambda r: r.success_rate, "{:.3f}", True),
        ("mean reward", lambda r: r.mean_reward, "{:.3f}", True),
        ("episodes failed", lambda r: r.failed, "{:.0f}", False),
        ("episodes timed out", lambda r: r.timed_out, "{:.0f}", False),
        ("eval time s", lambda r: r.duration_s, "{:.1f}", False),
    ]
    for name, get, fmt, compare in rows:
        values = [get(report) for report in reports]
        cells = [_fmt(value, fmt) for value in values]
        for value in values[1:]:
            cells.append(_delta(values[0], value, fmt) if compare else "")
        table.add_row(name, *cells)
    return table


def task_table(reports: Sequence[EvalReport], limit: int) -> Table:
    """One row per task (the first `limit`): successes of n per model, and the change from the first."""
    first = reports[0]
    shown = first.per_task[:limit]
    hidden = len(first.per_task) - len(shown)
    caption = f"{hidden} more tasks in the JSON file" if hidden > 0 else None
    table = Table(title="successes (c of n)", caption=caption, caption_justify="left")
    table.add_column("task")
    for report in reports:
        table.add_column(escape(report.label), justify="right")
    if len(reports) > 1:
        for report in reports[1:]:
            table.add_column(escape("Δ" if len(reports) == 2 else f"Δ {report.label}"), justify="right")
    for index, row in enumerate(shown):
        counts = [report.per_task[index].successes for report in reports]
        cells = [f"{c}/{row.n}" for c in counts]
        cells += [f"{c - counts[0]:+d}" if c != counts[0] else "0" for c in counts[1:]]
        table.add_row(escape(row.task_id), *cells)
    return table


def _pass_at(k: int) -> Getter:
    return lambda report: report.pass_at_k[k]


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _delta(first: float | None, value: float | None, fmt: str) -> str:
    if first is None or value is None:
        return "-"
    diff = value - first
    text = fmt.format(diff)
    return text if text.startswith("-") else f"+{text}"
