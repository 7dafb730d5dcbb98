"""One GRPO step, ajet vs TRL's GRPOTrainer, on the same model, batch and lengths, in the same run.

    pip install trl && python benchmarks/grpo_vs_trl.py [--steps 4] [--prompts 8] [--group 4] [--tokens 24]
                                                        [--precision fp32|bf16|both]

Both sample `group` completions for each of `prompts` single-digit addition prompts (at most `tokens` new
tokens, temperature 1), score them with the same numeric check, and make one optimizer step (full fine-tuning,
AdamW, no KL, PPO clip 0.2 / 0.28). A step is everything: generation, scoring, the update. The first step of
each is a warm-up and not counted; the median of the rest is compared.

Same work means the same precision: fp32 runs ajet with `model.autocast: none` and TRL with `bf16=False`; bf16
runs ajet with `model.autocast: bfloat16` and TRL with `bf16=True` (TRL's own default). TRL's default gradient
checkpointing is turned off in both, as ajet does not checkpoint here: it only trades time for memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
SYSTEM = "You are a calculator. Reply with the result only."


def numbers_match(reply: str, label: int) -> float:
    from ajet.core.judgers import parse_number

    value = parse_number(reply)
    return 1.0 if value is not None and abs(value - label) < 1e-6 else 0.0


def prompts(n: int) -> list[tuple[str, int]]:
    return [(f"What is {a} + {b}?", a + b) for a, b in [(i % 10, (3 * i + 1) % 10) for i in range(n)]]


def trl_step_times(args: argparse.Namespace, bf16: bool) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ajet.core.models import load_model

    model, tokenizer = load_model("smollm2-135m-instruct")
    tokenizer.padding_side = "left"
    rows = [
        {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}], "label": label}
        for q, label in prompts(args.prompts)
    ]
    dataset = Dataset.from_list(rows * (args.steps + 1))

    def reward(completions: list, label: list, **_: object) -> list[float]:
        return [numbers_match(c[0]["content"], y) for c, y in zip(completions, label, strict=True)]

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: object, **k: object) -> None:
            stamps.append(time.perf_counter())

        def on_step_end(self, *a: object, **k: object) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.prompts * args.group,
            num_generations=args.group,
            max_completion_length=args.tokens,
            max_steps=args.steps,
            learning_rate=5e-6,
            beta=0.0,
            epsilon=0.2,
            epsilon_high=0.28,
            temperature=1.0,
            use_cpu=True,
            bf16=bf16,
            gradient_checkpointing=False,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            shuffle_dataset=False,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
        trainer.train()
    return [end - begin for begin, end in zip(stamps[::2], stamps[1::2], strict=False)]


async def ajet_step_times(args: argparse.Namespace, bf16: bool) -> list[float]:
    from ajet.core.config import load_config
    from ajet.core.loading import load_workflow_factory
    from ajet.core.runtime import build_runtime
    from ajet.core.store.memory import MemoryStore
    from ajet.trainer.loop import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = load_config(
            ROOT / "examples/arithmetic/config.yaml",
            {
                "run_dir": out,
                "store": "memory",
                "model.autocast": "bfloat16" if bf16 else "none",
                "rollout.group_size": args.group,
                "rollout.sampling.max_tokens": args.tokens,
                "train.steps": args.steps,
                "train.tasks_per_step": args.prompts,
                "train.skip_zero_advantage": False,  # TRL trains on every completion: do the same work
                "train.val_every": 0,
                "train.logging.tensorboard": False,
            },
        )
        make_workflow = load_workflow_factory(config)
        runtime = await build_runtime(config, store=MemoryStore())
        try:
            trainer = Trainer(config, runtime, make_workflow)
            trainer.val_tasks = []
            times: list[float] = []
            for step in range(1, args.steps + 1):
                started = time.perf_counter()
                await trainer.train_step(step)
                times.append(time.perf_counter() - started)
        finally:
            await runtime.close()
    return times


def main(args: argparse.Namespace) -> None:
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    lines = [
        f"{args.prompts} prompts x {args.group} completions, <= {args.tokens} new tokens, full fine-tuning, CPU"
    ]
    for precision in precisions:
        bf16 = precision == "bf16"
        ajet_times = asyncio.run(ajet_step_times(args, bf16))
        trl_times = trl_step_times(args, bf16)
        ajet_step = statistics.median(ajet_times[1:])
        trl_step = statistics.median(trl_times[1:])
        lines += [
            f"[{precision}] ajet GRPO step : {ajet_step:6.1f} s  (steps: {[round(t, 1) for t in ajet_times]})",
            f"[{precision}] TRL GRPO step  : {trl_step:6.1f} s  (steps: {[round(t, 1) for t in trl_times]})",
            f"[{precision}] speed-up ajet vs TRL: {trl_step / ajet_step:.2f}x (goal >= 1.5x)",
        ]
        print("\n".join(lines[-3:]), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    main(parser.parse_args())
