"""Run the `ajet` command line as a user does, in a subprocess, for the example tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
