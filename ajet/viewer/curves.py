"""A run's curves from its metrics.jsonl. A run still training appends to that file, so each reader remembers how
far it has read and takes only the new complete lines on the next request (a partial last line waits)."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The charts the viewer draws, each a title and the metrics on it (those a run has; several runs share one chart).
CHARTS: list[tuple[str, list[str]]] = [
    ("reward", ["rollout/reward_mean"]),
    ("success", ["rollout/success_rate"]),
    ("validation", ["val/success_rate", "val/reward_mean"]),
    ("loss", ["train/loss"]),
    ("KL", ["train/kl", "train/policy/approx_kl", "train/approx_kl"]),
    ("entropy", ["train/entropy"]),
    (
        "clip fraction",
        [
            "train/policy/clip_frac_low",
            "train/policy/clip_frac_high",
            "train/clip_frac_low",
            "train/clip_frac_high",
        ],
    ),
    ("tokens/s", ["rollout/tokens_per_s", "train/train_tokens_per_s"]),
]

#: the validation metric the runs page reports (best and last), in order of preference
VALIDATION_METRICS = ("val/success_rate", "val/reward_mean")


class MetricsReader:
    """The rows of one metrics.jsonl, read incrementally. Safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._offset = 0
        self._identity: tuple[int, int] | None = None  # (device, inode): a replaced file is read again
        self._rows: list[dict[str, float]] = []

    def rows(self) -> list[dict[str, float]]:
        """Every complete row so far (a copy of the list; the rows themselves are shared, do not mutate them)."""
        with self._lock:
            self._refresh()
            return list(self._rows)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except OSError:
            self._reset(None)
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._reset(identity)  # a new file, or one truncated and written again
        if stat.st_size == self._offset:
            return
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # complete lines only: the trainer may be mid-write
        for line in chunk[:end].splitlines():
            row = _parse(line)
            if row is not None:
                self._rows.append(row)
        self._offset += end

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._identity, self._offset, self._rows = identity, 0, []


def _parse(line: bytes) -> dict[str, float] | None:
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None  # a line cut by a crash mid-write: skipped, the rest of the file still reads
    if not isinstance(data, dict) or not isinstance(data.get("step"), int | float):
        return None
    return {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


@dataclass
class Series:
    """One metric of one run over steps. A step logged twice (validation after the last step) keeps the last."""

    steps: list[float]
    values: list[float]


def series(rows: list[dict[str, float]], metric: str) -> Series:
    by_step: dict[float, float] = {}
    for row in rows:
        if metric in row:
            by_step[row["step"]] = row[metric]
    steps = sorted(by_step)
    return Series(steps=steps, values=[by_step[s] for s in steps])


def metric_names(rows: list[dict[str, float]]) -> list[str]:
    return sorted({k for row in rows for k in row if k not in ("step", "time")})


def last_step(rows: list[dict[str, float]]) -> int | None:
    """The last trained step: the newest row with training metrics (a validation-only row repeats a step)."""
    for row in reversed(rows):
        if any(k.startswith(("rollout/", "train/")) for k in row):
            return int(row["step"])
    return None


def validation(rows: list[dict[str, float]]) -> dict[str, Any] | None:
    """Best and last validation of a run: {metric, best, best_step, last, last_step}; None when it has none."""
    for metric in VALIDATION_METRICS:
        points = series(rows, metric)
        if points.values:
            best = max(range(len(points.values)), key=lambda i: (points.values[i], -points.steps[i]))
            return {
                "metric": metric,
                "best": points.values[best],
                "best_step": int(points.steps[best]),
                "last": points.values[-1],
                "last_step": int(points.steps[-1]),
            }
    return None


def curves_json(runs: list[tuple[str, str, list[dict[str, float]]]], extra: list[str]) -> dict[str, Any]:
    """What /api/curves returns for the given runs (key, name, rows): per chart, the series of every run that
    has its metrics; `extra` adds a chart per named metric."""
    charts = [*CHARTS, *((name, [name]) for name in extra if name)]
    out: list[dict[str, Any]] = []
    for title, metrics in charts:
        lines = []
        for key, name, rows in runs:
            for metric in metrics:
                points = series(rows, metric)
                if points.values:
                    label = metric if len(runs) == 1 else f"{name} · {metric}"
                    lines.append({"run": key, "metric": metric, "label": label, **points.__dict__})
        out.append({"title": title, "lines": lines})
    return {
        "charts": out,
        "metrics": sorted({m for _, _, rows in runs for m in metric_names(rows)}),
        "steps": {key: last_step(rows) for key, _, rows in runs},
    }
