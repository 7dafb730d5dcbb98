"""Does the engine's batching of concurrent episodes keep up with one batched `model.generate`?

    python benchmarks/engine_throughput.py [--tokens 64] [--episodes 8] [--repeats 3]

Measures, on the same chat prompts and in the same run:
  (a) one `model.generate` over all prompts at once (left padding, sampling): the ceiling for batching;
  (b) N coroutines, each awaiting `engine.generate` on its own prompt: how episodes use the engine;
  (c) one episode alone (skip with --no-single).
Throughput counts the tokens actually produced (a row stops at EOS), so rows that stop early do not inflate
it. Everything is warmed up first, then the variants run round-robin --repeats times; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
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


async def engine_episodes(
    engine: TransformersEngine, prompts: list[list[int]], tokens: int, temp: float
) -> int:
    sampling = SamplingParams(temperature=temp, max_tokens=tokens)
    results = await asyncio.gather(*(engine.generate(p, sampling) for p in prompts))
    return sum(len(r.ids) for r in results)


def rate(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    produced = run()
    return produced / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per episode")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--no-single", action="store_true", help="skip the one-episode measurement")
    args = parser.parse_args()

    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    prompts = make_prompts(tokenizer, args.episodes)
    engine = TransformersEngine(model, tokenizer, max_batch_size=max(32, args.episodes))
    loop = asyncio.new_event_loop()
    runs: dict[str, Callable[[], int]] = {
        "(a) batched model.generate": lambda: batched_generate(
            model, tokenizer, prompts, args.tokens, args.temperature
        ),
        f"(b) engine, {args.episodes} concurrent episodes": lambda: loop.run_until_complete(
            engine_episodes(engine, prompts, args.tokens, args.temperature)
        ),
    }
    if not args.no_single:
        runs["(c) engine, 1 episode alone"] = lambda: loop.run_until_complete(
            engine_episodes(engine, prompts[:1], args.tokens, args.temperature)
        )
    try:
        threads = torch.get_num_threads()
        print(f"{args.model}: {args.episodes} episodes x up to {args.tokens} tokens, torch threads {threads}")
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
