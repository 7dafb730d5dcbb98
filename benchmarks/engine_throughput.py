"""Does the engine's batching of concurrent episodes keep up with one batched `model.generate`?

    python benchmarks/engine_throughput.py [--tokens 64] [--episodes 8] [--repeats 3]
    python benchmarks/engine_throughput.py --engine vllm [--episodes 8 32] [--vllm-dtype bfloat16]

Measures, on the same chat prompts and in the same run:
  (a) one `model.generate` over all prompts at once (left padding, sampling): the ceiling for batching;
  (b) N coroutines, each awaiting `engine.generate` on its own prompt: how episodes use the engine;
  (c) one episode alone (skip with --no-single).
Throughput counts the tokens actually produced (a row stops at EOS), so rows that stop early do not inflate
it. Everything is warmed up first, then the variants run round-robin --repeats times; medians are reported.

With --engine vllm it compares instead, for each --episodes N and in the same run, N coroutines awaiting
`VLLMEngine.generate` (a vLLM CPU server started here, python from --vllm-python, default $AJET_VLLM_PYTHON or
.venv-vllm/bin/python; float32 and --enforce-eager unless --vllm-dtype; or a running one at --base-url)
against the same N coroutines on the `TransformersEngine`: same prompts, token budget and temperature; tokens
actually produced; round-robin repeats, medians, and the ratio vLLM / transformers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.models import load_model
from ajet.core.types import SamplingParams

QUESTIONS = [
    "What is 7 + 5?",
    "Write a short poem about the sea.",
    "Explain what a CPU does in two sentences.",
    "Give me three tips for learning to cook.",
    "What is the capital of France, and why is it famous?",
    "Tell me a story about a robot who learns to paint.",
    "How do plants make food from sunlight?",
    "List five animals that live in the Arctic.",
]


def make_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    prompts = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)] + (
            f" (variant {i // len(QUESTIONS)})" if i >= len(QUESTIONS) else ""
        )
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True
        )
        prompts.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    return prompts


def batched_generate(
    model: Any, tokenizer: Any, prompts: list[list[int]], tokens: int, temperature: float
) -> int:
    """One `model.generate` over every prompt; returns the tokens produced (up to each row's EOS)."""
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=tokens,
            pad_token_id=pad,
        )
    eos = tokenizer.eos_token_id
    produced = 0
    for row in out[:, width:].tolist():
        produced += row.index(eos) + 1 if eos in row else len(row)
    return produced


async def engine_episodes(engine: Any, prompts: list[list[int]], tokens: int, temp: float) -> int:
    sampling = SamplingParams(temperature=temp, max_tokens=tokens)
    results = await asyncio.gather(*(engine.generate(p, sampling) for p in prompts))
    return sum(len(r.ids) for r in results)


def rate(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    produced = run()
    return produced / (time.perf_counter() - start)


def start_vllm(python: str, model: str, dtype: str) -> Any:
    from ajet.core.engines.vllm_server import VllmServer, free_port, server_argv, server_env
    from ajet.core.models import resolve_model

    port = free_port()
    argv = server_argv(
        python=python,
        command=None,
        model_dir=str(resolve_model(model)),
        served_name="ajet-policy",
        port=port,
        dtype=dtype,
        max_model_len=2048,
        seed=0,
        enforce_eager=True,
        lora_rank=None,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="ajet-bench-throughput-"))
    server = VllmServer(
        argv,
        port=port,
        log_path=log_dir / "vllm-server.log",
        env=server_env(False, {"VLLM_CPU_KVCACHE_SPACE": "1"}),
    )
    started = time.perf_counter()
    server.start(show_progress=False)
    print(f"vLLM server ({dtype}) healthy after {time.perf_counter() - started:.0f} s, log {server.log_path}")
    return server


def compare_vllm(args: argparse.Namespace) -> None:
    """vLLM vs the transformers engine, N concurrent episodes each, in the same run (see the docstring)."""
    from ajet.core.config import AjetConfig
    from ajet.core.engines.vllm_engine import engine_from_config

    model, tokenizer = load_model(args.model)
    server = None if args.base_url else start_vllm(args.vllm_python, args.model, args.vllm_dtype)
    loop = asyncio.new_event_loop()
    try:
        config = AjetConfig.model_validate(
            {
                "workflow": "unused.py:Unused",
                "model": {"path": args.model},
                "engine": {"kind": "vllm", "base_url": args.base_url or server.base_url},
            }
        )
        vllm = engine_from_config(config, show_progress=False)
        local = TransformersEngine(model, tokenizer, max_batch_size=max(32, *args.episodes))
        threads = torch.get_num_threads()
        print(
            f"{args.model}: up to {args.tokens} tokens per episode, temperature {args.temperature:g}; "
            f"vLLM {args.vllm_dtype} (eager) vs transformers float32, torch threads {threads}"
        )
        summary = []
        for n in args.episodes:
            prompts = make_prompts(tokenizer, n)
            runs: dict[str, Callable[[], int]] = {
                f"vLLM, {n} concurrent episodes": lambda e=vllm, p=prompts: loop.run_until_complete(
                    engine_episodes(e, p, args.tokens, args.temperature)
                ),
                f"transformers, {n} concurrent episodes": lambda e=local, p=prompts: loop.run_until_complete(
                    engine_episodes(e, p, args.tokens, args.temperature)
                ),
            }
            for run in runs.values():  # warm-up
                run()
            rates: dict[str, list[float]] = {name: [] for name in runs}
            produced: dict[str, list[int]] = {name: [] for name in runs}
            for _ in range(args.repeats):  # round-robin: load from other processes hits both alike
                for name, run in runs.items():
                    start = time.perf_counter()
                    tokens = run()
                    rates[name].append(tokens / (time.perf_counter() - start))
                    produced[name].append(tokens)
            for name, values in rates.items():
                listed = ", ".join(f"{v:.1f}" for v in values)
                made = statistics.median(produced[name])
                print(
                    f"{name:<40} {statistics.median(values):7.1f} tokens/s (median; runs: {listed}; "
                    f"{made:.0f} tokens produced, median)"
                )
            v, t = rates.values()
            per_round = statistics.median(a / b for a, b in zip(v, t, strict=True))
            of_medians = statistics.median(v) / statistics.median(t)
            print(
                f"ratio vLLM/transformers at N={n}: {of_medians:.2f} (of medians), {per_round:.2f} (per round)"
            )
            summary.append((n, of_medians, per_round))
        if len(summary) > 1:
            print("summary: " + "; ".join(f"N={n}: x{a:.2f} (per round x{b:.2f})" for n, a, b in summary))
        loop.run_until_complete(local.aclose())
        loop.run_until_complete(vllm.aclose())
    finally:
        loop.close()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per episode")
    parser.add_argument(
        "--episodes", type=int, nargs="+", default=[8], help="concurrent episodes; several values run in turn"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--no-single", action="store_true", help="skip the one-episode measurement")
    parser.add_argument(
        "--engine",
        choices=["transformers", "vllm"],
        default="transformers",
        help="vllm: compare a vLLM server with the transformers engine instead (see above)",
    )
    parser.add_argument("--vllm-python", default=os.environ.get("AJET_VLLM_PYTHON", ".venv-vllm/bin/python"))
    parser.add_argument("--vllm-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--base-url", help="with --engine vllm: a running server to use instead of starting one"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.engine == "vllm":
        compare_vllm(args)
        return
    for episodes in args.episodes:
        measure_transformers(args, episodes)


def measure_transformers(args: argparse.Namespace, episodes: int) -> None:
    """The original comparison: (a) batched model.generate, (b) N engine episodes, (c) one episode."""

    model, tokenizer = load_model(args.model)
    prompts = make_prompts(tokenizer, episodes)
    engine = TransformersEngine(model, tokenizer, max_batch_size=max(32, episodes))
    loop = asyncio.new_event_loop()
    runs: dict[str, Callable[[], int]] = {
        "(a) batched model.generate": lambda: batched_generate(
            model, tokenizer, prompts, args.tokens, args.temperature
        ),
        f"(b) engine, {episodes} concurrent episodes": lambda: loop.run_until_complete(
            engine_episodes(engine, prompts, args.tokens, args.temperature)
        ),
    }
    if not args.no_single:
        runs["(c) engine, 1 episode alone"] = lambda: loop.run_until_complete(
            engine_episodes(engine, prompts[:1], args.tokens, args.temperature)
        )
    try:
        threads = torch.get_num_threads()
        print(f"{args.model}: {episodes} episodes x up to {args.tokens} tokens, torch threads {threads}")
        for run in runs.values():  # warm-up
            run()
        # Round-robin, so that load from other processes hits every variant alike; (b)/(a) is also taken
        # pairwise within each round.
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                rates[name].append(rate(run))
        for name, values in rates.items():
            listed = ", ".join(f"{v:.1f}" for v in values)
            print(f"{name:<40} {statistics.median(values):7.1f} tokens/s (median; runs: {listed})")
        a, b = list(rates.values())[:2]
        ratio = statistics.median(rb / ra for ra, rb in zip(a, b, strict=True))
        of_medians = statistics.median(b) / statistics.median(a)
        print(f"ratio (b)/(a) = {of_medians:.2f} (of medians), {ratio:.2f} (median of per-round ratios)")
        loop.run_until_complete(engine.aclose())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
