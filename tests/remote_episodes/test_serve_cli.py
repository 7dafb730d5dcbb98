"""`ajet serve` as a user runs it, with clients in other processes: the Python client, a client that speaks
plain HTTP with the standard library, `ajet worker` running an unchanged Workflow class, and a client killed
mid-episode. The run trains its steps; nothing is lost and nothing is counted twice. A server killed mid-run
and restarted with `--resume` keeps every finished episode and offers the unfinished ones again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajet.core.store.sqlite import SqliteStore
from ajet.core.types import Episode, EpisodeStatus

ROOT = Path(__file__).parents[2]
CLIENTS = ROOT / "tests" / "workflows" / "remote_clients.py"
PROBE = ROOT / "tests" / "workflows" / "ray_probe.py"
TOKEN = "serve-test-token"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    tmp_path: Path, tiny_dir: Path, port: int, workflow_args: dict[str, Any] | None = None, **train: Any
) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(json.dumps({"task_id": f"t{i}", "main_query": f"Say {i}."}) + "\n" for i in range(4))
    )
    config = {
        "name": "serve-tiny",
        # for `ajet worker`; the server runs no workflow
        "workflow": {"path": f"{PROBE}:ReportsItsProcess", "args": workflow_args or {}},
        "model": {"path": str(tiny_dir)},
        "gateway": {"port": port},
        "rollout": {
            "group_size": 2,
            "max_concurrency": 4,
            "sampling": {"max_tokens": 6, "temperature": 1.0},
            "remote": {"lease_s": 2.0},
        },
        "data": {"train": str(tasks)},
        "train": {"steps": 2, "tasks_per_step": 2, "lr": 1e-3, "logging": {"tensorboard": False}, **train},
        "run_dir": str(tmp_path / "run"),
        "store": str(tmp_path / "ajet.sqlite"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(*args: str, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "AJET_SERVER_TOKEN": TOKEN}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen[str], log: Path, timeout: float = 300) -> str:
    process.wait(timeout=timeout)
    return log.read_text()


def stored(path: Path) -> list[Episode]:
    store = SqliteStore(path)
    try:
        return store.episodes()
    finally:
        store.close()


def test_serve_trains_on_episodes_from_a_python_client_a_raw_http_client_and_a_killed_one(
    tmp_path: Path, tiny_dir: Path
) -> None:
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, tiny_dir, port)
    serve = start("-m", "ajet.cli.main", "serve", "-c", str(config), log=tmp_path / "serve.log")
    try:
        # The first episode goes to a client that is killed after one call: its lease runs out, the task is
        # offered again.
        dies = start(str(CLIENTS), "dies", server_url, log=tmp_path / "dies.log")
        dies.wait(timeout=120)
        assert dies.returncode == -signal.SIGKILL, (tmp_path / "dies.log").read_text()
        killed = json.loads((tmp_path / "dies.log").read_text().splitlines()[0])
        assert killed["call"] == 200
        python = start(str(CLIENTS), "python", server_url, "3", log=tmp_path / "python.log")
        raw = start(str(CLIENTS), "raw", server_url, log=tmp_path / "raw.log")
        python_out = finish(python, tmp_path / "python.log")
        raw_out = finish(raw, tmp_path / "raw.log")
        serve_out = finish(serve, tmp_path / "serve.log")
    finally:
        for process in (serve,):
            if process.poll() is None:
                process.kill()
    assert serve.returncode == 0, serve_out
    assert f"serving episodes at {server_url} (token: $AJET_SERVER_TOKEN)" in serve_out
    assert "done: step 2" in serve_out
    assert python.returncode == 0 and json.loads(python_out.splitlines()[-1])["episodes"] >= 1, python_out
    assert raw.returncode == 0 and json.loads(raw_out.splitlines()[-1])["episodes"] >= 1, raw_out

    episodes = stored(tmp_path / "ajet.sqlite")
    lost = [e for e in episodes if e.episode_id == killed["episode_id"]]
    assert (
        len(lost) == 1
        and lost[0].status == EpisodeStatus.TIMED_OUT
        and "lease expired" in (lost[0].error or "")
    )
    retries = [e for e in episodes if e.retry_of == killed["episode_id"]]
    assert len(retries) == 1 and retries[0].status == EpisodeStatus.OK
    assert (retries[0].group_id, retries[0].repeat_index) == (lost[0].group_id, lost[0].repeat_index)
    ok = [e for e in episodes if e.status == EpisodeStatus.OK]
    assert len(ok) == 2 * 2 * 2 and len(episodes) == len(ok) + 1  # 2 steps x 2 tasks x 2, plus the lost one
    assert {e.metadata["client"] for e in ok} == {"python", "raw"}
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "rollout/episodes" in m] == [1, 2]
    assert sum(m.get("rollout/retried", 0) for m in metrics) == 1


def test_two_workers_and_a_server_restarted_with_resume(tmp_path: Path, tiny_dir: Path) -> None:
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    # each episode waits 0.3 s in a "tool", so the server is killed with episodes in flight
    config = write_config(tmp_path, tiny_dir, port, {"tool_sleep_s": 0.3}, steps=3, checkpoint_every=1)
    serve = start("-m", "ajet.cli.main", "serve", "-c", str(config), log=tmp_path / "serve.log")
    worker_args = ["-m", "ajet.cli.main", "worker", "--server", server_url, "-c", str(config), "-n", "2"]
    workers = [start(*worker_args, "--name", f"w{i}", log=tmp_path / f"w{i}.log") for i in range(2)]
    run_dir = tmp_path / "run"
    try:
        deadline = time.monotonic() + 240
        while not list(run_dir.glob("checkpoints/step-000001")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        serve.send_signal(signal.SIGKILL)  # a crash: no clean shutdown, episodes of step 2 in flight
        serve.wait(timeout=30)
        before = {e.episode_id: e for e in stored(tmp_path / "ajet.sqlite")}
        resumed = start(
            "-m", "ajet.cli.main", "serve", "--resume", str(run_dir), log=tmp_path / "resumed.log"
        )
        resumed_out = finish(resumed, tmp_path / "resumed.log")
        worker_logs = [finish(w, tmp_path / f"w{i}.log", timeout=60) for i, w in enumerate(workers)]
    finally:
        for process in (serve, *workers):
            if process.poll() is None:
                process.kill()
    assert resumed.returncode == 0, resumed_out
    assert "done: step 3" in resumed_out
    for worker, log in zip(workers, worker_logs, strict=True):
        assert worker.returncode == 0 and "done," in log, log
    after = {e.episode_id: e for e in stored(tmp_path / "ajet.sqlite")}
    finished_before = [e for e in before.values() if e.status == EpisodeStatus.OK]
    assert finished_before and all(after[e.episode_id] == e for e in finished_before)  # kept as they were
    unfinished = [e for e in before.values() if e.status in (EpisodeStatus.PENDING, EpisodeStatus.RUNNING)]
    assert unfinished  # the kill came mid-step
    for episode in unfinished:
        assert after[episode.episode_id].status == EpisodeStatus.FAILED
        assert "re-offered after --resume" in (after[episode.episode_id].error or "")
    assert {e.worker.get("worker") for e in after.values() if e.status == EpisodeStatus.OK} == {"w0", "w1"}
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "rollout/episodes" in m][-2:] == [2, 3]
