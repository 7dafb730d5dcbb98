"""The trainer on the tiny random model with the real tokenizer: on-policy ratios, parameter updates, LoRA,
SFT, exact resume after SIGKILL, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ajet.core.config import parse_config
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import LabeledTask
from ajet.trainer.engine import LossSettings, TrainingEngine
from ajet.trainer.loop import Trainer
from ajet.trainer.samples import assign_advantages, build_samples, compute_episode_advantages
from tests.workflows.parity import (
    MixedTemperatureWorkflow,
    ParityWorkflow,
    RewrittenHistoryWorkflow,
    TwoTurnWorkflow,
)

ROOT = Path(__file__).parents[1]


def write_tasks(path: Path, n: int) -> None:
    rows = [{"task_id": f"t{i}", "main_query": f"Say something about the number {i}."} for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def make_config(tmp_path: Path, tiny_dir: Path, **train: Any) -> dict[str, Any]:
    tasks = tmp_path / "tasks.jsonl"
    write_tasks(tasks, 6)
    return {
        "name": "tiny",
        "workflow": f"{ROOT / 'tests/workflows/parity.py'}:ParityWorkflow",
        "model": {"path": str(tiny_dir)},
        "rollout": {
            "group_size": 4,
            "max_concurrency": 1,
            "sampling": {"max_tokens": 12, "temperature": 1.0},
        },
        "data": {"train": {"kind": "file", "path": str(tasks)}, "val": {"kind": "file", "path": str(tasks)}},
        "train": {
            "steps": 2,
            "tasks_per_step": 2,
            "lr": 1e-3,
            "micro_batch_tokens": 256,
            "logging": {"tensorboard": False},
            **train,
        },
        "run_dir": str(tmp_path / "run"),
        "store": "memory",
        "seed": 3,
    }


@pytest.fixture
async def runtime(tmp_path: Path, tiny_dir: Path) -> AsyncIterator[Runtime]:
    config = parse_config(make_config(tmp_path, tiny_dir), base_dir=ROOT)
    rt = await build_runtime(config, store=MemoryStore())
    try:
        yield rt
    finally:
        await rt.close()


TASKS = [LabeledTask(task_id=f"t{i}", main_query=f"Tell me about {i}.") for i in range(3)]


async def test_trainer_logprobs_match_the_recorded_ones_before_any_update(runtime: Runtime) -> None:
    episodes = await RolloutExecutor(runtime, TwoTurnWorkflow).run(TASKS)
    pairs = [(e, runtime.store.calls(e.episode_id)) for e in episodes]
    samples, stats = build_samples(pairs)
    assert stats.merges > 0, "two-turn episodes merge into one sequence"
    engine = runtime.engine
    training = TrainingEngine(engine.model, pad_id=engine.tokenizer.pad_token_id, micro_batch_tokens=200)
    recomputed = training.recompute_logprobs(samples)
    for sample, logprobs in zip(samples, recomputed, strict=True):
        mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
        new = torch.tensor(logprobs)[mask]
        old = torch.tensor(sample.old_logprobs)[mask]
        ratio = torch.exp(new - old)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4), (ratio.min(), ratio.max())


async def test_mixed_temperature_batch_has_importance_ratio_one_before_an_update(runtime: Runtime) -> None:
    """Calls at 0.5 to 1.6 while the config says 1.0: each token is recomputed at its own call's
    temperature (recomputing at the config's was off by up to 0.38 in log-prob)."""
    assert runtime.config.rollout.sampling.temperature == 1.0
    episodes = await RolloutExecutor(runtime, MixedTemperatureWorkflow).run(TASKS[:2])
    pairs = [(e, runtime.store.calls(e.episode_id)) for e in episodes]
    samples, stats = build_samples(pairs)
    assert stats.merges > 0  # both turns of an episode in one sequence, at two temperatures
    trained = {t for s in samples for t, m in zip(s.temperatures, s.loss_mask, strict=True) if m}
    assert trained == {0.5, 0.9, 1.3, 0.7, 1.6}
    engine = runtime.engine
    for share in (False, True):  # the plain forward and the shared-prompt forward
        training = TrainingEngine(
            engine.model, pad_id=engine.tokenizer.pad_token_id, micro_batch_tokens=400, share_prefixes=share
        )
        recomputed = training.recompute_logprobs(samples)
        for sample, logprobs in zip(samples, recomputed, strict=True):
            mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
            ratio = torch.exp(torch.tensor(logprobs)[mask] - torch.tensor(sample.old_logprobs)[mask])
            assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4), (share, ratio.min(), ratio.max())
    # and through a real optimizer step: nothing is clipped on the first mini-batch of fresh rollouts
    assign_advantages(samples, compute_episode_advantages(episodes, "grpo", samples)[0])
    step = TrainingEngine(engine.model, pad_id=engine.tokenizer.pad_token_id).train_step(
        samples, LossSettings(policy_loss="ppo_clip", loss_options={"clip_low": 0.001, "clip_high": 0.001})
    )
    assert step["policy/clip_frac_low"] == 0.0 and step["policy/clip_frac_high"] == 0.0, step
    assert abs(step["policy/approx_kl"]) < 1e-6, step


async def test_bf16_autocast_engine_and_trainer_agree_to_bf16_rounding(
    tmp_path: Path, tiny_dir: Path
) -> None:
    """model.autocast: bfloat16: the engine samples and the trainer recomputes under the same autocast, so the
    ratio is 1 up to bf16 rounding; the weights stay float32 and a step under autocast still trains them."""
    config = parse_config(
        make_config(tmp_path, tiny_dir) | {"model": {"path": str(tiny_dir), "autocast": "bfloat16"}}
    )
    rt = await build_runtime(config, store=MemoryStore())
    try:
        assert rt.engine.autocast_dtype == torch.bfloat16
        trainer = Trainer(config, rt, TwoTurnWorkflow)
        assert trainer.training.autocast_to == torch.bfloat16
        episodes = await RolloutExecutor(rt, TwoTurnWorkflow).run(TASKS)
        samples, _ = build_samples([(e, rt.store.calls(e.episode_id)) for e in episodes])
        recomputed = trainer.training.recompute_logprobs(samples)
        fp32 = TrainingEngine(rt.engine.model, pad_id=0).recompute_logprobs(samples)
        bf16_gap, fp32_gap = [], []
        for sample, logprobs, exact in zip(samples, recomputed, fp32, strict=True):
            mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
            old = torch.tensor(sample.old_logprobs)[mask]
            bf16_gap.append((torch.tensor(logprobs)[mask] - old).abs())
            fp32_gap.append((torch.tensor(exact)[mask] - old).abs())
        bf16_mean, fp32_mean = torch.cat(bf16_gap).mean().item(), torch.cat(fp32_gap).mean().item()
        assert bf16_mean < 0.02, bf16_mean  # recomputed under the same autocast: bf16 rounding only
        assert bf16_mean < fp32_mean, (bf16_mean, fp32_mean)  # and closer than an fp32 recompute would be
        assert all(p.dtype == torch.float32 for p in rt.engine.model.parameters())
        metrics = await trainer.train_step(1)
        assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    finally:
        await rt.close()


async def test_a_step_stores_each_merge_mismatch_where_it_happened(tmp_path: Path, tiny_dir: Path) -> None:
    """The second call of each episode rewrites the first user message: the trainer stores the mismatch with
    the position where the ids first differ, and both samples with the advantage they were trained with."""
    config = parse_config(make_config(tmp_path, tiny_dir, skip_zero_advantage=False), base_dir=ROOT)
    store = MemoryStore()
    rt = await build_runtime(config, store=store)
    try:
        trainer = Trainer(config, rt, RewrittenHistoryWorkflow)
        metrics = await trainer.train_step(1)
    finally:
        await rt.close()
    episodes = [e for e in store.episodes(rt.run_id) if e.phase == "train"]
    assert len(episodes) == 8 and metrics["samples/mismatch/prefix_mismatch"] == 8
    for episode in episodes:
        first, second = store.calls(episode.episode_id)
        previous = first.prompt_ids + first.completion_ids
        position = next(
            i for i, (a, b) in enumerate(zip(previous, second.prompt_ids, strict=False)) if a != b
        )
        (mismatch,) = store.mismatches(episode.episode_id)
        assert (mismatch.reason, mismatch.call_id, mismatch.step, mismatch.position) == (
            "prefix_mismatch",
            second.call_id,
            1,
            position,
        )
        assert (mismatch.expected, mismatch.found) == (previous[position], second.prompt_ids[position])
        samples = store.samples(episode.episode_id)
        assert [s.call_ids for s in samples] == [[first.call_id], [second.call_id]]
        assert len({s.advantage for s in samples}) == 1  # one episode, one advantage


async def test_one_step_changes_every_trained_parameter_with_finite_losses(runtime: Runtime) -> None:
    episodes = await RolloutExecutor(runtime, ParityWorkflow).run(TASKS)
    pairs = [(e, runtime.store.calls(e.episode_id)) for e in episodes]
    samples, _ = build_samples(pairs)
    advantages, _ = compute_episode_advantages(episodes, "grpo", samples)
    assign_advantages(samples, advantages)
    assert any(s.advantage != 0 for s in samples), "parity rewards give mixed groups"
    model = runtime.engine.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    training = TrainingEngine(model, pad_id=0, micro_batch_tokens=128)
    metrics = training.train_step(samples, LossSettings(policy_loss="ppo_clip", kl_coef=0.0))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    assert metrics["micro_batches"] > 1, "the token budget splits the batch"
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p.detach(), before[name])]
    assert unchanged == []


async def test_grpo_training_loop_runs_validates_and_checkpoints(tmp_path: Path, tiny_dir: Path) -> None:
    config = parse_config(make_config(tmp_path, tiny_dir, val_every=1, kl_coef=0.01), base_dir=ROOT)
    store = MemoryStore()
    rt = await build_runtime(config, store=store)
    try:
        version = rt.engine.version
        result = await Trainer(config, rt, ParityWorkflow).run()
    finally:
        await rt.close()
    assert result.final_step == 2 and len(result.history) == 2
    row = result.history[-1]
    assert "rollout/reward_mean" in row and "val/success_rate" in row and "train/loss" in row
    assert row["train/kl"] >= 0
    assert rt.engine.version > version, "the engine serves the new weights"
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-000002"
    check_run_record(store, rt.run_id, steps=2, val_tasks=6)


def check_run_record(store: Any, run_id: str, steps: int, val_tasks: int) -> None:
    """What `ajet view` reads: the run's record, each episode's phase, step and policy version, and the trained
    samples of each training episode with the advantage they were trained with."""
    (run,) = store.runs()
    assert (run.run_id, run.status, run.step, run.kind) == (run_id, "finished", steps, "train")
    episodes = store.episodes(run_id)
    train = [e for e in episodes if e.phase == "train"]
    assert sorted({e.step for e in train}) == list(range(1, steps + 1))
    assert len(train) == steps * 2 * 4  # tasks_per_step 2, group_size 4
    for episode in train:  # rolled out for step s, by the policy after s - 1 updates (on-policy)
        assert episode.policy_version == episode.step - 1
    val = [e for e in episodes if e.phase == "val"]
    assert sorted({e.step for e in val}) == list(range(0, steps + 1)) and len(val) == val_tasks * (steps + 1)
    samples = [s for e in train for s in store.samples(e.episode_id)]
    assert samples and {s.step for s in samples} <= set(range(1, steps + 1))
    for record in samples:
        episode = store.get_episode(record.episode_id)
        assert record.step == episode.step and record.run_id == run_id
        assert len(record.input_ids) == len(record.loss_mask) == len(record.old_logprobs) and sum(
            record.loss_mask
        )
        trained = [c for c in store.calls(record.episode_id) if c.call_id in record.call_ids]
        completion = [t for c in trained for t in c.completion_ids]
        assert [t for t, m in zip(record.input_ids, record.loss_mask, strict=True) if m] == completion
    # GRPO: in each group the trained samples' advantages are the group-normalised rewards, so they sum to ~0
    by_group: dict[str, list[float]] = {}
    for record in samples:
        by_group.setdefault(store.get_episode(record.episode_id).group_id, []).append(record.advantage)
    full = [advantages for advantages in by_group.values() if len(advantages) == 4]
    assert full and all(abs(sum(advantages)) < 1e-4 for advantages in full)


async def test_lora_trains_only_adapters(tmp_path: Path, tiny_dir: Path) -> None:
    config = parse_config(
        make_config(tmp_path, tiny_dir, steps=1, lora={"enabled": True, "r": 4}), base_dir=ROOT
    )
    rt = await build_runtime(config, store=MemoryStore())
    try:
        base_weight = rt.engine.model.model.layers[0].self_attn.q_proj.weight.detach().clone()
        trainer = Trainer(config, rt, ParityWorkflow)
        lora_before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
        await trainer.run()
        after = dict(trainer.policy.named_parameters())
    finally:
        await rt.close()
    assert lora_before and all("lora_" in name for name in lora_before)
    assert any(not torch.equal(after[n].detach(), p) for n, p in lora_before.items())
    q_proj = trainer.policy.base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(q_proj.base_layer.weight.detach(), base_weight)
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "model" / "adapter_config.json").exists()


def ajet(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ajet.cli.main", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints" / "step-000004" / "model" / "model.safetensors")


def test_a_run_killed_after_step_2_resumes_to_the_same_weights(tmp_path: Path, tiny_dir: Path) -> None:
    def config_file(name: str) -> Path:
        data = make_config(tmp_path, tiny_dir, steps=4, checkpoint_every=1, keep_checkpoints=5)
        data["run_dir"] = str(tmp_path / name)
        data["store"] = str(tmp_path / f"{name}.sqlite")
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    straight = ajet("train", "-c", str(config_file("straight")))
    output, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, output

    killed = ajet("train", "-c", str(config_file("killed")))
    marker = tmp_path / "killed" / "checkpoints" / "step-000002"
    deadline = time.time() + 600
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "checkpoints" / "step-000004").exists()

    resumed = ajet("train", "--resume", str(tmp_path / "killed"))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "resuming" in output

    expected, got = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # one run across the resume: one record, every episode under its id
    from ajet.core.store import SqliteStore

    store = SqliteStore(tmp_path / "killed.sqlite", read_only=True)
    (run,) = store.runs()
    assert (run.status, run.step) == ("finished", 4)
    assert {e.run_id for e in store.episodes()} == {run.run_id}
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["run_id"] == run.run_id
    store.close()


def test_export_writes_a_model_transformers_loads(tmp_path: Path, tiny_dir: Path) -> None:
    data = make_config(tmp_path, tiny_dir, steps=1, lora={"enabled": True, "r": 4})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    run = ajet("train", "-c", str(path))
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    export = ajet("export", str(tmp_path / "run"), "--out", str(tmp_path / "exported"))
    output, _ = export.communicate(timeout=600)
    assert export.returncode == 0, output

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "exported")
    assert not any("lora" in name for name, _ in model.named_parameters())
    ids = tokenizer("Hello", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def write_demonstrations(path: Path) -> None:
    """Scripted tool-using demonstrations: call the calculator, read its result, answer."""
    tool = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate arithmetic.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
    lines = []
    for a, b in [(12, 7), (31, 4), (25, 25)]:
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "calculator", "arguments": f'{{"expression": "{a}*{b}"}}'},
        }
        messages = [
            {"role": "user", "content": f"What is {a} * {b}?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": str(a * b)},
            {"role": "assistant", "content": f"The answer is {a * b}."},
        ]
        lines.append(json.dumps({"messages": messages, "tools": [tool]}))
    path.write_text("\n".join(lines) + "\n")


async def test_sft_on_scripted_demonstrations_lowers_their_loss(tmp_path: Path, tiny_dir: Path) -> None:
    demos = tmp_path / "demos.jsonl"
    write_demonstrations(demos)
    data = make_config(
        tmp_path, tiny_dir, algorithm="sft", demonstrations=str(demos), steps=6, tasks_per_step=3
    )
    config = parse_config(data, base_dir=ROOT)
    rt = await build_runtime(config, store=MemoryStore())
    try:
        trainer = Trainer(config, rt, ParityWorkflow)
        (sample,) = [s for s in trainer.demonstrations if "12 * 7" in rt.engine.tokenizer.decode(s.input_ids)]
        text = rt.engine.tokenizer.decode(
            [t for t, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m]
        )
        assert "<tool_call>" in text and "calculator" in text and "The answer is 84." in text
        assert sample.num_calls == 2, "the tool turn and the answer merge into one sequence"
        assert "84" not in text.split("The answer")[0], "the tool result is not trained on"
        result = await trainer.run()
    finally:
        await rt.close()
    losses = [row["train/sft/nll"] for row in result.history]
    assert losses[-1] < losses[0]
