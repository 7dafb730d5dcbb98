"""`ajet debug` and `ajet train` with `rollout.backend: ray`, as a user runs them: each starts its own local Ray
instance with two workers, and every episode runs in a worker's process, not in ajet's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajet.core.store.sqlite import SqliteStore
from ajet.core.types import EpisodeStatus

ROOT = Path(__file__).parents[2]
PROBE = ROOT / "tests" / "workflows" / "ray_probe.py"


def write_config(tmp_path: Path, tiny_dir: Path) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(json.dumps({"task_id": f"t{i}", "main_query": f"Say {i}."}) + "\n" for i in range(4))
    )
    config = {
        "name": "ray-tiny",
        "workflow": f"{PROBE}:ReportsItsProcess",
        "model": {"path": str(tiny_dir)},
        "rollout": {
            "backend": "ray",
            "workers": 2,
            "group_size": 2,
            "max_concurrency": 4,
            "sampling": {"max_tokens": 6, "temperature": 1.0},
        },
        "data": {"train": str(tasks)},
        "train": {"steps": 2, "tasks_per_step": 2, "lr": 1e-3, "logging": {"tensorboard": False}},
        "run_dir": str(tmp_path / "run"),
        "store": str(tmp_path / "ajet.sqlite"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ajet(*args: str) -> tuple[int, str, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ajet.cli.main", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=600)
    return process.returncode, output, process.pid


def ran_in_workers(store_path: Path, ajet_pid: int) -> list[Any]:
    store = SqliteStore(store_path)
    try:
        episodes = store.episodes()
    finally:
        store.close()
    assert episodes and all(e.status == EpisodeStatus.OK for e in episodes), [e.error for e in episodes]
    for episode in episodes:
        assert episode.worker["backend"] == "ray" and episode.worker["worker"].startswith("ray-worker-")
        assert episode.worker["pid"] != ajet_pid and episode.metadata["pid"] == episode.worker["pid"]
    return episodes


@pytest.mark.slow
def test_a_debug_run_on_two_ray_workers(tmp_path: Path, tiny_dir: Path) -> None:
    config = write_config(tmp_path, tiny_dir)
    rc, output, pid = ajet("debug", "-c", str(config), "--tasks", "2")
    assert rc == 0, output
    assert "episodes run on ray (2 workers x 2 episodes, on a local Ray instance)" in output
    assert len(ran_in_workers(tmp_path / "ajet.sqlite", pid)) == 4


@pytest.mark.slow
def test_a_two_step_train_on_two_ray_workers(tmp_path: Path, tiny_dir: Path) -> None:
    config = write_config(tmp_path, tiny_dir)
    rc, output, pid = ajet("train", "-c", str(config))
    assert rc == 0, output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rollout/episodes" in r]
    assert [r["rollout/episodes"] for r in steps] == [4.0, 4.0]
    assert all(r["rollout/failed"] == 0 and r["rollout/retried"] == 0 for r in steps)
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-000002"
    episodes = ran_in_workers(tmp_path / "ajet.sqlite", pid)
    assert len(episodes) == 8 and len({e.worker["pid"] for e in episodes}) == 2
