"""Asynchronous training against synchronous, measured in the same run: the trainer's step time and trained
samples per second with `rollout.max_staleness` 0 (synchronous), 1 and 2, on long-tail episodes.

    python benchmarks/async_rollouts.py [--model tiny|smollm2-135m-instruct] [--steps 8] [--staleness 0 1 2]
        [--tasks-per-step 4] [--group-size 4] [--base-s 0.1] [--tail 5] [--concurrency 64]

The workflow (tests/workflows/async_probe.py:LongTailWorkflow) makes one short LLM call, then waits: most
episodes --base-s seconds, the first of every group --tail times longer (a slow tool, a long agent turn). A
synchronous step waits for its slowest episode before it trains, and rolls out nothing while it trains; with
s >= 1 the next steps' episodes run during both. The step time is the steady state: from the end of the first
step to the end of the last, over steps - 1 (no model loading, no final checkpoint). Every run trains the
same number of steps; the ratios are against s = 0 in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ajet.core.config import parse_config
from ajet.core.loading import load_workflow_factory
from ajet.core.runtime import build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.trainer.loop import Trainer
from ajet.trainer.samples import Sample

ROOT = Path(__file__).parents[1]
WORKFLOW = ROOT / "tests" / "workflows" / "async_probe.py"


class TimedTrainer(Trainer):
    """Stamps the end of every step and counts the samples each step trained."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_ends: list[float] = []
        self.trained: list[int] = []
        self.staleness: list[int] = []

    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        self.trained.append(len(samples))
        self.staleness.extend(step - 1 - s.version for s in samples)
        return super().update(samples, step)

    async def train_step(self, step: int) -> dict[str, float]:
        metrics = await super().train_step(step)
        self.step_ends.append(time.perf_counter())
        return metrics


def config_for(args: argparse.Namespace, staleness: int, work: Path) -> dict[str, Any]:
    tasks = work / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps({"task_id": f"t{i}", "main_query": f"Say something about {i}."}) + "\n"
            for i in range(32)
        )
    )
    model = args.model
    if model == "tiny":
        from ajet.core.models import build_tiny_model

        model_dir = work / "tiny-model"
        if not model_dir.exists():
            tiny, tokenizer = build_tiny_model(seed=0)
            tiny.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
        model = str(model_dir)
    return {
        "name": f"async-s{staleness}",
        "workflow": {
            "path": f"{WORKFLOW}:LongTailWorkflow",
            "args": {"base_s": args.base_s, "tail_factor": args.tail},
        },
        "model": {"path": model},
        "rollout": {
            "group_size": args.group_size,
            "max_concurrency": args.concurrency,
            "max_staleness": staleness,
            "sampling": {"max_tokens": args.max_tokens, "temperature": 1.0},
        },
        "data": {"train": {"kind": "file", "path": str(tasks)}},
        "train": {
            "steps": args.steps,
            "tasks_per_step": args.tasks_per_step,
            "lr": 1e-5,
            "skip_zero_advantage": False,  # every run trains the same number of samples
            "logging": {"tensorboard": False},
        },
        "run_dir": str(work / f"run-s{staleness}"),
        "store": "memory",
        "seed": 1,
    }


async def measure(args: argparse.Namespace, staleness: int, work: Path) -> dict[str, float]:
    config = parse_config(config_for(args, staleness, work), base_dir=ROOT)
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        trainer = TimedTrainer(config, runtime, load_workflow_factory(config))
        result = await trainer.run()
    finally:
        await runtime.close()
    window = trainer.step_ends[-1] - trainer.step_ends[0]
    steps = len(trainer.step_ends) - 1
    samples = sum(trainer.trained[1:])
    train_s = [row.get("train/step_time_s", 0.0) for row in result.history[1:]]
    return {
        "step_s": window / steps,
        "samples_per_s": samples / window,
        "train_s": sum(train_s) / len(train_s),
        "wait_s": sum(row["rollout/wait_s"] for row in result.history[1:]) / steps,
        "staleness_max": float(max(trainer.staleness)),
        "stale_share": sum(a > 0 for a in trainer.staleness) / len(trainer.staleness),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="tiny, or a model.path such as smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--staleness", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks-per-step", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument(
        "--base-s", type=float, default=0.1, help="seconds most episodes wait after their call"
    )
    parser.add_argument(
        "--tail", type=float, default=5.0, help="the first episode of a group waits this x longer"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="rollout.max_concurrency")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if 0 not in args.staleness:
        args.staleness = [0, *args.staleness]  # the baseline
    print(
        f"async rollouts: {args.model}, {args.steps} steps x {args.tasks_per_step} tasks x {args.group_size} "
        f"episodes; episodes wait {args.base_s:g} s, one per group {args.base_s * args.tail:g} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = {s: asyncio.run(measure(args, s, Path(tmp))) for s in sorted(args.staleness)}
    base = results[0]
    for staleness, r in results.items():
        print(
            f"  max_staleness {staleness}: {r['step_s']:.3f} s/step  {r['samples_per_s']:6.1f} samples/s  "
            f"{base['step_s'] / r['step_s']:.2f}x the sync speed  (update {r['train_s']:.3f} s, waited for "
            f"rollouts {r['wait_s']:.3f} s/step; staleness max {r['staleness_max']:.0f}, "
            f"{r['stale_share']:.0%} of samples stale)"
        )


if __name__ == "__main__":
    main()
