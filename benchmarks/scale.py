"""Scaling benchmarks: what N processes cost and give, each part measured in one run.

    python benchmarks/scale.py --part training [--model tiny|smollm2-135m-instruct] [--samples 16] [--steps 3]
    python benchmarks/scale.py --part rollouts [--episodes 32] [--concurrency 8] [--tool-s 0.5] [--workers 1 2 4]

`training`: one optimizer step (TrainingEngine.train_step) on a fixed set of synthetic GRPO-like samples, on 1
rank and on 2 gloo ranks (DDP, real processes under torchrun), on the same samples; prints the seconds per step
and the ratio. The CPU cores are split between the ranks (1 rank: all of them; 2 ranks: half each), so on a CPU
machine the ratio shows the cost of the data-parallel machinery (gradient all-reduce, token sharding, padding
passes) more than a speed-up; on GPUs each rank has its own device.

`rollouts`: episodes per second of I/O-bound agents (one tiny-model call, then a tool that takes --tool-s), on
the local backend and on 1, 2 and 4 Ray workers (one local Ray instance), --concurrency episodes at once in all,
the ratio against the local backend. Two agents: one awaits its tool (`asyncio.sleep`: episodes overlap on one
event loop, so local is already good), one calls a blocking tool (`time.sleep`: a sync SDK or subprocess; one
process runs those one at a time, W workers W at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]


# -- training --------------------------------------------------------------------------------------------------


def training_worker(args: argparse.Namespace) -> None:
    """One rank of the training benchmark (run under torchrun for N > 1): times `--steps` optimizer steps."""
    import torch

    from ajet.core.config import parse_config
    from ajet.core.models import build_tiny_model, load_model
    from ajet.trainer.distributed import init_ranks
    from ajet.trainer.engine import LossSettings, TrainingEngine
    from benchmarks.train_throughput import make_samples

    torch.set_num_threads(args.threads)
    config = parse_config(
        {"workflow": "unused.py:Unused", "train": {"distributed": {"strategy": args.strategy}}}
    )
    ranks = init_ranks(config)
    model, _ = build_tiny_model(seed=0) if args.model == "tiny" else load_model(args.model)
    vocab = model.get_input_embeddings().num_embeddings
    samples = make_samples(args.samples, args.prompt, args.completion, vocab)
    engine = TrainingEngine(
        model, pad_id=0, micro_batch_tokens=args.micro_batch_tokens, ranks=ranks, strategy=args.strategy
    )
    loss = LossSettings()
    engine.train_step(samples, loss)  # warm-up
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        metrics = engine.train_step(samples, loss)
        times.append(time.perf_counter() - started)
    if ranks.master_process:
        Path(args.worker_out).write_text(
            json.dumps(
                {
                    "step_s": statistics.median(times),
                    "tokens": metrics["train_tokens"],
                    "loss": metrics["loss"],
                }
            )
        )
    ranks.close()


def run_training(nproc: int, args: argparse.Namespace) -> dict[str, float]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        flags = [
            "--part", "training", "--worker-out", str(out), "--model", args.model, "--samples", str(args.samples),
            "--prompt", str(args.prompt), "--completion", str(args.completion), "--steps", str(args.steps),
            "--micro-batch-tokens", str(args.micro_batch_tokens), "--strategy", args.strategy,
            "--threads", str(max(1, cores // nproc)),
        ]  # fmt: skip
        launcher = (
            [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(max(1, cores // nproc))}
        subprocess.run(
            [sys.executable, *launcher, __file__, *flags], check=True, env=env, capture_output=True
        )
        return json.loads(out.read_text())


def bench_training(args: argparse.Namespace) -> None:
    one = run_training(1, args)
    two = run_training(2, args)
    print(
        f"training: {args.samples} samples, {one['tokens']:.0f} tokens, model {args.model}, {args.strategy}"
    )
    print(f"  1 rank : {one['step_s']:.3f} s/step (loss {one['loss']:.6f})")
    print(f"  2 ranks: {two['step_s']:.3f} s/step (loss {two['loss']:.6f})")
    print(f"  ratio 2 ranks / 1 rank: {two['step_s'] / one['step_s']:.2f}x the time")


# -- rollouts: episodes per second on Ray workers vs the local backend ---------------------------------------

TOOL_AGENTS = Path(__file__).parent / "workflows" / "tool_agents.py"


async def _episodes_per_second(
    tiny: tuple[Any, Any],
    agent: str,
    backend: str,
    workers: int,
    episodes: int,
    concurrency: int,
    tool_s: float,
) -> float:
    from ajet.core.config import parse_config
    from ajet.core.engines.transformers_engine import TransformersEngine
    from ajet.core.loading import load_workflow_factory
    from ajet.core.rollout import RolloutExecutor
    from ajet.core.runtime import build_runtime
    from ajet.core.store.memory import MemoryStore
    from ajet.core.types import EpisodeStatus, LabeledTask

    model, tokenizer = tiny
    config = parse_config(
        {
            "workflow": {"path": f"{TOOL_AGENTS}:{agent}", "args": {"tool_s": tool_s}},
            "rollout": {
                "backend": backend,
                "workers": workers,
                "group_size": 1,
                "max_concurrency": concurrency,
                "sampling": {"max_tokens": 4},
            },
        }
    )
    runtime = await build_runtime(config, store=MemoryStore(), engine=TransformersEngine(model, tokenizer))
    try:
        executor = RolloutExecutor(runtime, load_workflow_factory(config))
        tasks = [LabeledTask(task_id=f"t{i}", main_query=f"Say {i}.") for i in range(episodes)]
        await executor.run(
            tasks[: max(2, workers)]
        )  # warm-up: every worker imported the workflow and ran once
        started = time.perf_counter()
        done = await executor.run(tasks)
        elapsed = time.perf_counter() - started
    finally:
        await runtime.close()
    failed = [e.error for e in done if e.status != EpisodeStatus.OK]
    if failed:
        raise RuntimeError(f"{len(failed)} episodes failed, e.g. {failed[0]}")
    return len(done) / elapsed


def bench_rollouts(args: argparse.Namespace) -> None:
    import ray

    from ajet.core.models import build_tiny_model

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    tiny = build_tiny_model(seed=0)
    print(
        f"rollouts: {args.episodes} episodes, one tiny-model call + a {args.tool_s:g} s tool each, "
        f"{args.concurrency} at once in all"
    )
    try:
        for agent in ("AsyncToolAgent", "BlockingToolAgent"):
            base = asyncio.run(
                _episodes_per_second(tiny, agent, "local", 1, args.episodes, args.concurrency, args.tool_s)
            )
            print(f"  {agent:18s} local          {base:6.2f} episodes/s  1.00x")
            for workers in args.workers:
                rate = asyncio.run(
                    _episodes_per_second(
                        tiny, agent, "ray", workers, args.episodes, args.concurrency, args.tool_s
                    )
                )
                print(f"  {agent:18s} ray x{workers:<2d}        {rate:6.2f} episodes/s  {rate / base:.2f}x")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["training", "rollouts", "all"], default="all")
    parser.add_argument("--model", default="tiny", help="'tiny' (random, 2 layers) or a model path/alias")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--completion", type=int, default=160)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--episodes", type=int, default=32, help="rollouts: episodes per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="rollouts: episodes at once, in all")
    parser.add_argument(
        "--tool-s", type=float, default=0.5, help="rollouts: seconds each episode's tool takes"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="rollouts: Ray worker counts"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)  # set when this runs as one rank
    args = parser.parse_args()
    if args.worker_out:
        training_worker(args)
        return
    if args.part in ("training", "all"):
        bench_training(args)
    if args.part in ("rollouts", "all"):
        bench_rollouts(args)


if __name__ == "__main__":
    main()
