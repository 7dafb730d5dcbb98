"""Tokens trained with merged timelines vs one sample per call, on a 5-turn agent.

    python benchmarks/multiturn_tokens.py [--turns 5] [--episodes 8]

A 5-turn agent (each turn: the model answers, a tool-style result is appended, the model is asked again) runs
through the real gateway on SmolLM2-135M-Instruct (or `--model tiny`: random weights, the real tokenizer). The same
recorded calls are then turned into samples two ways: merged (consecutive calls whose prompt extends the
previous prompt + completion become one sequence) and one sample per call. Both the tokens that go through the
model and the wall time of a training step on them are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.models import build_tiny_model, load_model
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import LlmCall
from ajet.trainer.engine import LossSettings, TrainingEngine
from ajet.trainer.samples import Sample, build_samples


class MultiTurnAgent(Workflow):
    turns: int = 5

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        messages = [
            {"role": "system", "content": "You are an agent. Think step by step and use the observations."},
            {"role": "user", "content": workflow_task.task.main_query},
        ]
        for turn in range(self.turns):
            reply = await client.chat.completions.create(
                model="ajet-policy", messages=messages, max_tokens=24
            )
            messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
            messages.append({"role": "user", "content": f"Observation {turn}: the tool returned {turn * 7}."})
        return WorkflowOutput(reward=1.0)


def per_call_samples(calls: list[LlmCall]) -> list[Sample]:
    return [
        Sample(
            input_ids=[*c.prompt_ids, *c.completion_ids],
            loss_mask=[0] * len(c.prompt_ids) + [1] * len(c.completion_ids),
            old_logprobs=[0.0] * len(c.prompt_ids) + list(c.logprobs),
            advantage=1.0,
            episode_id=c.episode_id,
            group_id="g",
            agent_name=c.agent_name,
            target_tag=c.target_tag,
            reward=1.0,
        )
        for c in calls
        if c.prompt_ids is not None and c.completion_ids is not None and c.logprobs is not None
    ]


async def main(args: argparse.Namespace) -> None:
    if args.model == "tiny":
        model, tokenizer = build_tiny_model(seed=0)
    else:
        model, tokenizer = load_model(args.model)
    config = parse_config(
        {"workflow": "unused:Unused", "rollout": {"group_size": 1}, "gateway": {"http": False}}
    )
    runtime = await build_runtime(config, store=MemoryStore(), engine=TransformersEngine(model, tokenizer))
    tasks = [LabeledTask(task_id=str(i), main_query=f"Investigate case {i}.") for i in range(args.episodes)]
    try:
        episodes = await RolloutExecutor(runtime, lambda: MultiTurnAgent(turns=args.turns)).run(tasks)
        pairs = [(e, runtime.store.calls(e.episode_id)) for e in episodes]
    finally:
        await runtime.close()

    merged, stats = build_samples(pairs)
    for sample in merged:
        sample.advantage = 1.0
    separate = per_call_samples([c for _, calls in pairs for c in calls])
    merged_tokens = sum(len(s.input_ids) for s in merged)
    separate_tokens = sum(len(s.input_ids) for s in separate)
    trained = sum(s.num_trained_tokens for s in merged)
    assert trained == sum(s.num_trained_tokens for s in separate), "both train the same completion tokens"

    training = TrainingEngine(model, pad_id=tokenizer.pad_token_id or 0, micro_batch_tokens=4096)
    loss = LossSettings(entropy_metric=False)
    timings = {}
    for name, samples in (("merged", merged), ("per call", separate)):
        training.train_step(samples, loss)  # warm-up
        started = time.perf_counter()
        for _ in range(args.repeats):
            training.train_step(samples, loss)
        timings[name] = (time.perf_counter() - started) / args.repeats

    print(
        f"{args.episodes} episodes x {args.turns} turns: {stats.calls_used} calls, {stats.merges} merges, "
        f"{stats.mismatches} mismatches"
    )
    print(
        f"merged timelines : {len(merged):3d} samples, {merged_tokens:6d} tokens, step {timings['merged']:.3f} s"
    )
    print(
        f"one per call     : {len(separate):3d} samples, {separate_tokens:6d} tokens, step {timings['per call']:.3f} s"
    )
    print(f"trained (completion) tokens in both: {trained}")
    print(
        f"ratio merged / per call: tokens {merged_tokens / separate_tokens:.2f}x, "
        f"step time {timings['merged'] / timings['per call']:.2f}x (goal: tokens <= 0.6x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", help="a model spec, or 'tiny' for the tiny random model"
    )
    asyncio.run(main(parser.parse_args()))
