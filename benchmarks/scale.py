"""Scaling benchmarks: what N processes cost and give, each part measured in one run.

    python benchmarks/scale.py --part training [--model tiny|smollm2-135m-instruct] [--samples 16] [--steps 3]

`training`: one optimizer step (TrainingEngine.train_step) on a fixed set of synthetic GRPO-like samples, on 1
rank and on 2 gloo ranks (DDP, real processes under torchrun), on the same samples; prints the seconds per step
and the ratio. The CPU cores are split between the ranks (1 rank: all of them; 2 ranks: half each), so on a CPU
machine the ratio shows the cost of the data-parallel machinery (gradient all-reduce, token sharding, padding
passes) more than a speed-up; on GPUs each rank has its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


# -- rollouts (the Ray part is added here later) ----------------------------------------------------------------


def bench_rollouts(args: argparse.Namespace) -> None:
    print("rollouts: not written yet")


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
