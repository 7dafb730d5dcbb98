"""Training throughput: ajet's GRPO step vs a plain torch forward/backward/AdamW step on the same samples, and
both as a share of this machine's fp32 matmul rate, all measured in the same run.

    python benchmarks/train_throughput.py [--samples 8] [--prompt 96] [--completion 160] [--model smollm2-135m-instruct]

The samples look like GRPO samples (a prompt, then a completion that is trained); lengths vary around the given
ones so that padding is realistic. The plain baseline pads everything to the longest sample and runs one batch
with cross-entropy on the completion tokens: the least work a training step can do on these tokens.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

from ajet.core.models import load_model
from ajet.trainer.batching import collate
from ajet.trainer.engine import LossSettings, TrainingEngine
from ajet.trainer.samples import Sample


def make_samples(n: int, prompt: int, completion: int, vocab: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        p = max(8, int(prompt * rng.uniform(0.8, 1.2)))
        c = max(8, int(completion * rng.uniform(0.5, 1.5)))
        samples.append(
            Sample(
                input_ids=[rng.randrange(vocab) for _ in range(p + c)],
                loss_mask=[0] * p + [1] * c,
                old_logprobs=[0.0] * p + [-2.0] * c,
                advantage=1.0 if i % 2 else -1.0,
                episode_id=f"e{i}",
                group_id="g",
                agent_name="a",
                target_tag="a",
                reward=float(i % 2),
            )
        )
    return samples


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, samples: list[Sample]) -> None:
    batch = collate(samples, list(range(len(samples))), pad_id=0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    targets = batch.input_ids[:, 1:].masked_fill(batch.loss_mask[:, 1:] == 0, -100)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    params = sum(p.numel() for p in model.parameters())
    samples = make_samples(args.samples, args.prompt, args.completion, len(tokenizer))
    tokens = sum(len(s.input_ids) for s in samples)
    rate = matmul_gflops()

    plain_optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    plain = timed(lambda: plain_step(model, plain_optimizer, samples), args.repeats)

    engine = TrainingEngine(model, pad_id=0, micro_batch_tokens=args.micro_batch_tokens)
    loss = LossSettings(entropy_metric=args.entropy)
    ajet_time = timed(lambda: engine.train_step(samples, loss), args.repeats)

    def share(seconds: float) -> float:
        return (
            6 * params * tokens / seconds / 1e9 / rate
        )  # forward + backward ~ 6 FLOPs per parameter per token

    print(f"model {args.model}: {params / 1e6:.0f}M parameters; {len(samples)} samples, {tokens} tokens")
    print(f"fp32 matmul rate on this machine: {rate:.0f} GFLOP/s")
    print(f"plain torch step : {plain:.2f} s  {tokens / plain:7.0f} tok/s  {share(plain):.0%} of matmul rate")
    print(
        f"ajet GRPO step   : {ajet_time:.2f} s  {tokens / ajet_time:7.0f} tok/s  {share(ajet_time):.0%} of matmul rate"
    )
    print(f"ratio ajet / plain throughput: {plain / ajet_time:.2f}x (goal >= 0.9x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--completion", type=int, default=160)
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--entropy", action="store_true", help="also compute the entropy metric (costs a pass)"
    )
    main(parser.parse_args())
