"""How much latency does the gateway add to an LLM call, compared with calling the engine directly?

    python benchmarks/gateway_overhead.py [--engine instant|tiny|both] [--calls 640] [--repeats 3]
                                          [--store memory|sqlite]

Modes, measured in the same run on the same prompt:
  engine      `await engine.generate(prompt_ids, sampling)` (the prompt rendered once, beforehand)
  asgi        the gateway's ASGI app called directly with a prepared request: the gateway's own work alone
  httpx-asgi  a plain httpx client bound in-process through `gateway.http_client(key)` (no socket)
  sdk-asgi    `openai.AsyncOpenAI(http_client=gateway.http_client(key))`, in-process
  sdk-http    `openai.AsyncOpenAI(base_url=<loopback>)`, real HTTP to the gateway's uvicorn thread
each at 1 and 64 concurrent episodes (one key and one client per episode; an episode's calls in sequence).

Engines:
  instant  an `InferenceEngine` whose `generate` returns a prepared completion at once. It isolates what
           the gateway itself costs (auth, JSON, validation, chat template + tokenization, tool parsing,
           recording, response building, transport). Used only here: the tests run the real engine.
  tiny     the real TransformersEngine on the tiny random model (greedy, max_tokens 2): the same overheads on
           top of real, batched engine calls (noisier).

Reported per mode: "ms/call" = wall time / calls (what a batch of concurrent episodes pays per call), mean
latency per call, and the overhead over the engine-direct row. The client runs in this process, so the
HTTP rows include both the client's and the server's CPU time (they share the GIL, as they do in a run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from ajet.core.engines.base import InferenceEngine
from ajet.core.gateway.app import IN_PROCESS_BASE_URL, Gateway
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.keys import KeyBinding
from ajet.core.gateway.render import ChatRenderer
from ajet.core.gateway.tool_parsers import HermesToolParser
from ajet.core.store.base import Store
from ajet.core.types import Completion, Episode, LabeledTask, SamplingParams

MESSAGES = [
    {"role": "system", "content": "You are a careful math tutor. Answer with the number only."},
    {"role": "user", "content": "What is 17 + 25? Think about the tens first, then the ones."},
]
ANSWER = "42"


class InstantEngine(InferenceEngine):
    """Returns the same prepared completion at once: no compute, so only the gateway's own cost remains."""

    def __init__(self, tokenizer: Any, model_name: str = "ajet-policy") -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context = 8192
        ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        self._completion = Completion(ids=ids, logprobs=[-0.1] * len(ids), text=ANSWER, finish_reason="stop")

    @property
    def version(self) -> int:
        return 0

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        return self._completion

    async def load_weights(self, weights: Any) -> None:
        pass


def open_store(kind: str, tmp: Path) -> Store:
    from ajet.core.store import open_store as open_configured

    return open_configured(
        "memory" if kind == "memory" else str(tmp / f"bench-{time.monotonic_ns()}.sqlite"), tmp
    )


class Bench:
    def __init__(self, engine: InferenceEngine, store: Store, sampling: SamplingParams) -> None:
        self.engine = engine
        self.sampling = sampling
        renderer = ChatRenderer(engine.tokenizer)
        self.prompt_ids = renderer.render(MESSAGES)
        backend = EngineChatBackend(engine, renderer, HermesToolParser(), sampling)
        self.gateway = Gateway(backend, store)
        self.body = {"model": "m", "messages": MESSAGES, "max_tokens": sampling.max_tokens}

    def new_key(self) -> str:
        episode = Episode(task=LabeledTask(task_id="t", main_query="q"), group_id="g")
        self.gateway.store.add_episode(episode)
        return self.gateway.keys.issue(KeyBinding(episode_id=episode.episode_id))

    def caller(self, mode: str) -> Callable[[], Awaitable[Any]]:
        """One episode's way of making a call in this mode (its own key and client)."""
        if mode == "engine":
            return lambda: self.engine.generate(self.prompt_ids, self.sampling)
        key = self.new_key()
        if mode == "asgi":
            return self.asgi_caller(key)
        if mode == "httpx-asgi":
            http = self.gateway.http_client(key)

            async def post() -> Any:
                response = await http.post("/chat/completions", json=self.body)
                response.raise_for_status()
                return response

            return post
        if mode == "sdk-asgi":
            client = openai.AsyncOpenAI(
                api_key=key,
                base_url=IN_PROCESS_BASE_URL,
                http_client=self.gateway.http_client(key),
                max_retries=0,
            )
        else:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.gateway.base_url,
                max_retries=0,
                http_client=httpx.AsyncClient(limits=limits, timeout=60),
            )
        return lambda: client.chat.completions.create(**self.body)

    def asgi_caller(self, key: str) -> Callable[[], Awaitable[Any]]:
        body = json.dumps(self.body).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"authorization", f"Bearer {key}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "server": ("ajet-gateway", 80),
            "client": ("127.0.0.1", 1),
        }

        async def call() -> None:
            messages = iter([{"type": "http.request", "body": body, "more_body": False}])
            answered = asyncio.Event()

            async def receive() -> dict[str, Any]:
                message = next(messages, None)
                if message is not None:
                    return message
                # As a server does: "disconnect" only once the client is gone, here after the answer (the
                # gateway cancels a request whose client disconnects while it generates).
                await answered.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and message["status"] != 200:
                    raise RuntimeError(f"gateway answered {message['status']}")
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    answered.set()

            await self.gateway.app(dict(scope), receive, send)

        return call

    async def measure(self, mode: str, episodes: int, calls_per_episode: int) -> tuple[float, float]:
        callers = [self.caller(mode) for _ in range(episodes)]
        await asyncio.gather(*(call() for call in callers))  # warm-up: connections, caches
        latencies: list[float] = []

        async def episode(call: Callable[[], Awaitable[Any]]) -> None:
            for _ in range(calls_per_episode):
                started = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(episode(call) for call in callers))
        wall = time.perf_counter() - started
        return wall / len(latencies) * 1000, statistics.mean(latencies) * 1000


async def run_engine(name: str, engine: InferenceEngine, args: argparse.Namespace, tmp: Path) -> None:
    sampling = SamplingParams(max_tokens=2, temperature=0)
    bench = Bench(engine, open_store(args.store, tmp), sampling)
    await bench.gateway.start_http()
    # torch's first calls at a new shape are slow; get them out of the way for every mode alike.
    for _ in range(10):
        await engine.generate(bench.prompt_ids, sampling)
    await asyncio.gather(*(engine.generate(bench.prompt_ids, sampling) for _ in range(64)))
    calls = args.calls if name == "instant" else max(10, args.calls // 10)
    print(f"\nengine: {name}   prompt: {len(bench.prompt_ids)} tokens   store: {args.store}   ", end="")
    print(f"median of {args.repeats} runs")
    print(f"{'mode':<12}{'episodes':>9}{'calls':>7}{'ms/call':>10}{'latency ms':>12}{'overhead ms/call':>18}")
    try:
        for episodes in (1, 64):
            per_episode = max(2, calls // episodes)
            baseline = None
            for mode in ("engine", "asgi", "httpx-asgi", "sdk-asgi", "sdk-http"):
                runs = [await bench.measure(mode, episodes, per_episode) for _ in range(args.repeats)]
                per_call, latency = sorted(runs)[len(runs) // 2]
                baseline = per_call if baseline is None else baseline
                overhead = "" if mode == "engine" else f"{per_call - baseline:+.3f}"
                total = episodes * per_episode
                print(f"{mode:<12}{episodes:>9}{total:>7}{per_call:>10.3f}{latency:>12.3f}{overhead:>18}")
    finally:
        await bench.gateway.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["instant", "tiny", "both"], default="both")
    parser.add_argument("--calls", type=int, default=640, help="calls per measurement (instant engine)")
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is reported")
    args = parser.parse_args()

    from ajet.core.models import build_tiny_model

    model, tokenizer = build_tiny_model(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.engine in ("instant", "both"):
            await run_engine("instant", InstantEngine(tokenizer), args, Path(tmp))
        if args.engine in ("tiny", "both"):
            from ajet.core.engines.transformers_engine import TransformersEngine

            engine = TransformersEngine(model, tokenizer)
            try:
                await run_engine("tiny", engine, args, Path(tmp))
            finally:
                await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
