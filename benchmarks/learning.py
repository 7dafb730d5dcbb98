"""Held-out accuracy before and after a fixed CPU time budget of GRPO training (the arithmetic example).

    python benchmarks/learning.py --minutes 30

Validation problems are never trained on (see examples/arithmetic/workflow.py). Accuracy is measured twice each
time: greedy (one answer per problem) and sampled at the training temperature (mean over --samples answers per
problem), both in the same run, before and after training.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from ajet.core.config import load_config
from ajet.core.loading import load_workflow_factory
from ajet.core.rollout import RolloutExecutor, RolloutSettings
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.tasks import load_tasks
from ajet.core.types import LabeledTask
from ajet.trainer.loop import Trainer, episode_metrics

ROOT = Path(__file__).parents[1]


async def accuracy(
    runtime: Runtime, make_workflow, tasks: list[LabeledTask], samples: int, temperature: float
) -> float:
    settings = RolloutSettings(
        group_size=samples,
        max_concurrency=32,
        episode_timeout_s=600,
        seed=12345,
        sampling={"temperature": temperature},
    )
    episodes = await RolloutExecutor(runtime, make_workflow, settings).run(tasks)
    return episode_metrics(episodes, "val").get("val/success_rate", 0.0)


async def main(args: argparse.Namespace) -> None:
    config = load_config(
        args.config,
        {
            "store": "memory",
            "run_dir": str(args.run_dir),
            "train.steps": 10_000,
            "train.max_time_s": args.minutes * 60,
            "train.val_every": 0,
            "train.checkpoint_every": 0,
            "train.logging.tensorboard": True,
        },
    )
    make_workflow = load_workflow_factory(config)
    assert config.data.val is not None
    val_tasks = load_tasks(config.data.val, config.base_dir)
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        temperature = config.rollout.sampling.temperature
        before_greedy = await accuracy(runtime, make_workflow, val_tasks, 1, 0.0)
        before_sampled = await accuracy(runtime, make_workflow, val_tasks, args.samples, temperature)
        print(
            f"before: greedy {before_greedy:.1%}  sampled {before_sampled:.1%}  ({len(val_tasks)} held-out tasks)"
        )
        trainer = Trainer(config, runtime, make_workflow)
        trainer.val_tasks = []  # measured here instead, the same way before and after
        started = time.perf_counter()
        result = await trainer.run()
        minutes = (time.perf_counter() - started) / 60
        after_greedy = await accuracy(runtime, make_workflow, val_tasks, 1, 0.0)
        after_sampled = await accuracy(runtime, make_workflow, val_tasks, args.samples, temperature)
    finally:
        await runtime.close()
    rewards = [row.get("rollout/reward_mean", float("nan")) for row in result.history]
    print(f"trained {result.final_step} steps in {minutes:.1f} min")
    print(f"train reward per step: {[round(r, 2) for r in rewards]}")
    print(f"after:  greedy {after_greedy:.1%}  sampled {after_sampled:.1%}")
    print(
        f"change: greedy {100 * (after_greedy - before_greedy):+.1f} points, "
        f"sampled {100 * (after_sampled - before_sampled):+.1f} points"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples/arithmetic/config.yaml")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per held-out problem")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs/learning-benchmark")
    asyncio.run(main(parser.parse_args()))
