"""`ajet view` on the command line: it serves the runs and prints the URL, refuses a non-loopback host without
--allow-remote, and says what is wrong with a missing directory or a port in use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ajet.core.gateway.app import listening_socket
from tests.examples.cli import ROOT, explain, run_ajet
from tests.viewer.fill import make_run


def test_view_serves_the_runs_and_prints_the_url(tmp_path: Path) -> None:
    make_run(tmp_path / "runs", "demo", "no/model", episodes=3, steps=2)
    process = subprocess.Popen(
        [sys.executable, "-m", "ajet.cli.main", "view", str(tmp_path / "runs"), "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ajet view: 1 run in \S+ at (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        url = match.group(1)
        for _ in range(200):  # the socket is bound before the line is printed; the app starts just after
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert page.status_code == 200 and 'href="/runs/demo"' in page.text
        assert httpx.get(url + "runs/demo/episodes", timeout=5).status_code == 200
        assert httpx.post(url, timeout=5).status_code == 405  # read-only: no route takes a write
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_view_refuses_a_remote_host_without_allow_remote(tmp_path: Path) -> None:
    result = run_ajet("view", str(tmp_path), "--host", "0.0.0.0", timeout=120)
    assert result.returncode == 2, explain(result)
    assert "--host 0.0.0.0 is not a loopback address" in result.stdout and "--allow-remote" in result.stdout


def test_view_names_a_missing_directory_and_a_busy_port(tmp_path: Path) -> None:
    missing = run_ajet("view", str(tmp_path / "nope"), timeout=120)
    assert missing.returncode == 2 and "no such directory" in missing.stdout and "nope" in missing.stdout
    busy = listening_socket("127.0.0.1", 0)
    busy.listen()
    try:
        port = str(busy.getsockname()[1])
        result = run_ajet("view", str(tmp_path), "--port", port, timeout=120)
    finally:
        busy.close()
    assert result.returncode == 2, explain(result)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stdout and "--port" in result.stdout
