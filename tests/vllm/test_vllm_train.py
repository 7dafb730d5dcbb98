"""`ajet train` with `engine.kind: vllm`, as a user runs it: ajet launches the server, trains SmolLM2 for real,
pushes the weights after every step, and a server killed mid-run stops the run with a clear error from which
`ajet train --resume` continues."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.examples.cli import ROOT, explain, run_ajet

CONFIG = ROOT / "examples" / "arithmetic" / "config.yaml"


def _settings(vllm_python: str, steps: int) -> list[str]:
    pairs = {
        "engine.kind": "vllm",
        "engine.launch.python": vllm_python,
        "engine.launch.env": '{"VLLM_CPU_KVCACHE_SPACE": "1"}',
        "train.steps": str(steps),
        "train.tasks_per_step": "2",
        "train.val_every": "0",
        "train.checkpoint_every": "1",
        "train.skip_zero_advantage": "false",
        "train.logging.tensorboard": "false",
        "data.val": "null",
    }
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


def _calls_per_version(run_dir: Path) -> dict[int, int]:
    with sqlite3.connect(run_dir / "ajet.sqlite") as db:
        return dict(db.execute("select model_version, count(*) from calls group by model_version").fetchall())


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_steps_train_on_a_launched_vllm_server(vllm_python: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_ajet("train", "-c", str(CONFIG), "--run-dir", str(run_dir), *_settings(vllm_python, 2))
    assert result.returncode == 0, explain(result)
    assert "done: step 2" in result.stdout
    # 2 tasks x group 4, one call each: step 1's calls come from version 0, step 2's from the pushed version 1
    assert _calls_per_version(run_dir) == {0: 8, 1: 8}
    steps = [m for m in _metrics(run_dir) if "train/policy/ratio_max" in m]
    assert len(steps) == 2
    for row in steps:
        # the importance ratio is 1 before each update: vLLM's log-probs are the trainer's, before and after a push
        assert (
            abs(row["train/policy/ratio_max"] - 1) < 1e-3 and abs(row["train/policy/ratio_mean"] - 1) < 1e-4
        )
        assert row["weight_sync/verify_max_diff"] < 1e-3 and row["weight_sync/bytes"] > 5e8
    assert (run_dir / "vllm-server.log").stat().st_size > 0
    assert not (run_dir / "vllm-server.pid").exists(), "the server was stopped at the end of the run"


def test_a_killed_server_stops_the_run_clearly_and_it_resumes(vllm_python: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "ajet.cli.main", "train", "-c", str(CONFIG), "--run-dir", str(run_dir)]
    process = subprocess.Popen(
        command + _settings(vllm_python, 3),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "checkpoints" / "step-000001").is_dir():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "no checkpoint of step 1 within 10 minutes"
            time.sleep(0.5)
        os.killpg(int((run_dir / "vllm-server.pid").read_text()), signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, output
    assert "engine error" in output and "vLLM server was killed" in output and "vllm-server.log" in output, (
        output
    )
    assert f"ajet train --resume {run_dir}" in output, output
    assert "Traceback" not in output, output

    resumed = run_ajet("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, explain(resumed)
    assert "done: step 3" in resumed.stdout
    versions = _calls_per_version(run_dir)
    assert versions.get(2, 0) > 0, f"the resumed run's rollouts come from the pushed weights: {versions}"
