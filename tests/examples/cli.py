"""Run the `ajet` command line as a user does, in a subprocess, for the example tests."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]


def run_ajet(*args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`ajet ARGS...` with this interpreter; check `returncode`, `stdout` and `stderr` yourself."""
    return subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """The output to show when an assertion on a run fails."""
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )


def train_two_steps(config: Path | str, run_dir: Path, *settings: str) -> list[dict[str, Any]]:
    """`ajet train -c CONFIG --steps 2` as the example tests run it; returns the two steps' metrics rows.

    SmolLM2 rarely scores on these tasks out of the box, so a group's episodes often tie and would give no
    samples: `train.skip_zero_advantage=false` trains on them anyway, so the update path always runs."""
    result = run_ajet(
        "train", "-c", str(config), "--steps", "2", "--run-dir", str(run_dir),
        "--set", "train.skip_zero_advantage=false", "--set", "train.logging.tensorboard=false", *settings,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row.get("step", 0) >= 1 and "rollout/episodes" in row]
    assert [row["step"] for row in steps] == [1, 2], rows
    for row in steps:  # metrics.jsonl keeps finite values only: present means finite
        assert (
            math.isfinite(row["train/loss"]) and row["rollout/failed"] == 0 and row["rollout/timed_out"] == 0
        )
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-000002"
    return steps


def debug_episodes(config: Path | str, out: Path, *settings: str) -> list[dict[str, Any]]:
    """`ajet debug -c CONFIG --store memory --out OUT --strict SETTINGS...`: the episodes it wrote, every one ok."""
    result = run_ajet(
        "debug", "-c", str(config), "--store", "memory", "--out", str(out), "--strict", *settings
    )
    assert result.returncode == 0, explain(result)
    episodes = [json.loads(line) for line in out.read_text().splitlines()]
    assert episodes and all(e["status"] == "ok" for e in episodes), [e["error"] for e in episodes]
    return episodes
