"""What the seed tests share: a config for a seed workflow file, a 1-step `ajet train`, the AgentScope major
that is installed, and a stand-in for the remote OpenAI-compatible server that the seeds' native
`debug_model`s (`OpenAIChatModel(...)`) call."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.examples.cli import explain, run_ajet

WORKFLOWS = Path(__file__).parent / "workflows"
SUPPORT = WORKFLOWS / "seed_support.py"


def agentscope_major() -> int:
    agentscope = pytest.importorskip("agentscope")
    return int(str(agentscope.__version__).split(".")[0])


def needs_agentscope(major: int) -> None:
    """Skip unless AgentScope `major`.x is installed: the seeds' code is 1.x (`ReActAgent`, `agentscope.memory`,
    `execute_python_code` do not exist in 2.x); CI runs the 1.x tests in `.ci/agentscope1.sh`."""
    installed = agentscope_major()
    if installed != major:
        names = "the seeds' 1.x-only names (ReActAgent, ...)" if major == 1 else "2.x's Agent"
        pytest.skip(f"needs AgentScope {major}.x for {names}; AgentScope {installed}.x is installed")


def write_config(
    tmp_path: Path, model_dir: Path, workflow: str, tasks: str, *, group_size: int = 1, **sections: Any
) -> Path:
    """A config running `workflows/<workflow>` on `seed_support.py:<tasks>()`, with short answers."""
    config: dict[str, Any] = {
        "name": "seed",
        "workflow": {"path": str(WORKFLOWS / workflow)},
        "framework": "agentscope",
        "model": {"path": str(model_dir)},
        "rollout": {
            "group_size": group_size,
            "max_concurrency": 4,
            "episode_timeout_s": 120,
            "sampling": {"temperature": 1.0, "max_tokens": 8},
        },
        "data": {"train": {"kind": "generator", "function": f"{SUPPORT}:{tasks}", "kwargs": {"count": 1}}},
        "train": {"algorithm": "grpo", "tasks_per_step": 1, "lr": 1.0e-5, "micro_batch_tokens": 4096},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def train_one_step(config: Path, run_dir: Path, *settings: str) -> dict[str, Any]:
    """`ajet train --steps 1` (groups of 2, ties trained anyway): the step's metrics row."""
    result = run_ajet(
        "train", "-c", str(config), "--steps", "1", "--run-dir", str(run_dir),
        "--set", "rollout.group_size=2", "--set", "train.skip_zero_advantage=false",
        "--set", "train.logging.tensorboard=false", *settings,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (step,) = [row for row in rows if row.get("step") == 1 and "rollout/episodes" in row]
    assert step["rollout/failed"] == 0 and step["rollout/timed_out"] == 0, step
    assert step["samples/trained"] > 0, step
    return step


@dataclass
class OpenAIServer:
    """An OpenAI-compatible Chat Completions server on loopback that answers every request with `answer`: it
    stands for the remote model (e.g. Qwen on a provider) that the seeds' native debug models call."""

    answer: str = "Player1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""


@contextmanager
def openai_server(answer: str = "Player1") -> Iterator[OpenAIServer]:
    server_state = OpenAIServer(answer=answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            server_state.requests.append(body)
            reply = {
                "id": f"chatcmpl-{len(server_state.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "remote"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": server_state.answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback base_url where nothing listens: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
