"""Asynchronous training (rollout.max_staleness) and dynamic sampling (train.drop_constant_groups) on the tiny
random model with the real tokenizer: s = 0 equals the synchronous loop built by hand, s = 1 trains samples
exactly one version old with the importance weights logged, constant groups are replaced, and the truncated
importance weights are what they are by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ajet.core.config import AjetConfig, parse_config
from ajet.core.rollout import RolloutExecutor, RolloutSettings
from ajet.core.runtime import build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.tasks import load_tasks
from ajet.trainer.data import TaskCursor
from ajet.trainer.engine import LossSettings, OptimizerSettings, TrainingEngine
from ajet.trainer.loop import Trainer, ppo_updates
from ajet.trainer.off_policy import correct_stale_samples, truncated_is_weights
from ajet.trainer.samples import Sample, assign_advantages, build_samples, compute_episode_advantages
from tests.test_trainer import ROOT, make_config
from tests.workflows.async_probe import ConstantOnEvenTasksWorkflow, LongTailWorkflow
from tests.workflows.parity import ParityWorkflow


def config_for(
    tmp_path: Path, tiny_dir: Path, workflow: str, rollout: dict[str, Any], **train: Any
) -> AjetConfig:
    data = make_config(tmp_path, tiny_dir, **train)
    data["workflow"] = f"{ROOT / 'tests/workflows'}/{workflow}"
    data["rollout"].update(rollout)
    del data["data"]["val"]  # no validation: the runs compare training only
    return parse_config(data, base_dir=ROOT)


class RecordingTrainer(Trainer):
    """Records the (policy version, sample) pairs every update trains, before any correction."""

    trained: list[tuple[int, Sample]]

    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        self.__dict__.setdefault("trained", []).extend((step - 1, s) for s in samples)
        return super().update(samples, step)


async def reference_weights(config: AjetConfig) -> dict[str, torch.Tensor]:
    """The synchronous loop from its public building blocks: per step, the cursor's tasks, one executor run
    (seed * 7919 + step), samples, GRPO advantages, ppo_updates, and the weights served as the next version."""
    train, rollout = config.train, config.rollout
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        policy = runtime.engine.model
        tasks = load_tasks(config.data.train, config.base_dir)
        cursor = TaskCursor(len(tasks), seed=config.seed)
        training = TrainingEngine(
            policy,
            pad_id=runtime.engine.tokenizer.pad_token_id,
            optimizer=OptimizerSettings(lr=train.lr, total_steps=train.steps * train.mini_batches),
            micro_batch_tokens=train.micro_batch_tokens,
        )
        loss = LossSettings()
        for step in range(1, train.steps + 1):
            settings = RolloutSettings(
                group_size=rollout.group_size,
                max_concurrency=rollout.max_concurrency,
                episode_timeout_s=rollout.episode_timeout_s,
                seed=config.seed * 7919 + step,
            )
            chosen = cursor.take(tasks, train.tasks_per_step)
            episodes = await RolloutExecutor(runtime, ParityWorkflow, settings).run(chosen)
            samples, _ = build_samples([(e, runtime.store.calls(e.episode_id)) for e in episodes])
            advantages, _ = compute_episode_advantages(episodes, "grpo", samples)
            assign_advantages(samples, advantages)
            samples = [s for s in samples if s.advantage != 0.0]
            ppo_updates(
                training,
                samples,
                loss,
                ppo_epochs=1,
                mini_batches=train.mini_batches,
                seed=config.seed * 31 + step,
            )
            await runtime.engine.load_weights(policy, step)
        return {name: p.detach().clone() for name, p in policy.named_parameters()}
    finally:
        await runtime.close()


async def test_max_staleness_0_trains_the_same_weights_as_the_synchronous_loop(
    tmp_path: Path, tiny_dir: Path, tiny_model_and_tokenizer: tuple[Any, Any]
) -> None:
    # One episode at a time, as in the resume test: with several, the engine's batches depend on timing, and
    # two runs of the reference loop itself differ in the last bits (1e-6).
    config = config_for(
        tmp_path, tiny_dir, "parity.py:ParityWorkflow", {"max_concurrency": 1}, steps=3, mini_batches=2
    )
    assert config.rollout.max_staleness == 0
    expected = await reference_weights(config)
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        trainer = Trainer(config, runtime, ParityWorkflow)
        assert trainer.policy is runtime.engine.model, "s = 0 keeps training the engine's own module"
        result = await trainer.run()
        got = {name: p.detach() for name, p in trainer.policy.named_parameters()}
    finally:
        await runtime.close()
    assert result.final_step == 3
    assert not any(key.startswith("off_policy/") for key in result.history[-1])
    assert expected.keys() == got.keys()
    initial = dict(tiny_model_and_tokenizer[0].named_parameters())
    assert any(not torch.equal(got[name], initial[name]) for name in got), "training moved the weights"
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


async def test_max_staleness_1_trains_samples_at_most_one_version_old_with_is_stats(
    tmp_path: Path, tiny_dir: Path
) -> None:
    # 3 steps x 2 tasks x 4 episodes, all admitted steps' episodes running at once (max_concurrency 16):
    # step 2's episodes start at version 0 beside step 1's and are trained by version 1.
    config = config_for(
        tmp_path,
        tiny_dir,
        "async_probe.py:LongTailWorkflow",
        {"max_concurrency": 16, "max_staleness": 1},
        steps=3,
    )
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        trainer = RecordingTrainer(config, runtime, LongTailWorkflow)
        assert trainer.policy is not runtime.engine.model, "s > 0 trains a copy, pushed into the engine"
        result = await trainer.run()
        served = {name: t.detach().clone() for name, t in runtime.engine.model.state_dict().items()}
        trained = {name: t.detach() for name, t in trainer.policy.state_dict().items()}
    finally:
        await runtime.close()
    ages = [version - sample.version for version, sample in trainer.trained]
    assert ages and max(ages) <= 1 and min(ages) >= 0
    assert ages.count(1) > 0, "some samples were trained one version after they were sampled"
    assert ages.count(0) > 0
    for row in result.history:
        assert row["off_policy/staleness_max"] <= 1
        for key in ("is_weight_mean", "is_weight_max", "truncated_frac", "stale_samples"):
            assert math.isfinite(row[f"off_policy/{key}"]), key
    assert sum(row["off_policy/stale_samples"] for row in result.history) == ages.count(1)
    assert any(row["off_policy/stale_samples"] > 0 for row in result.history)
    assert served.keys() == trained.keys()
    for name in served:  # the last push copied the trained weights into the engine
        assert torch.equal(served[name], trained[name]), name


async def test_drop_constant_groups_replaces_them_and_counts_them(tmp_path: Path, tiny_dir: Path) -> None:
    config = config_for(
        tmp_path,
        tiny_dir,
        "async_probe.py:ConstantOnEvenTasksWorkflow",
        {"max_concurrency": 8},
        steps=2,
        drop_constant_groups=True,
        skip_zero_advantage=False,  # so a constant group, had it been trained, would show among the samples
    )
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        trainer = RecordingTrainer(config, runtime, ConstantOnEvenTasksWorkflow)
        result = await trainer.run()
    finally:
        await runtime.close()
    dropped = sum(row["rollout/dropped_constant_groups"] for row in result.history)
    assert dropped >= 1
    groups: dict[str, set[float]] = {}
    for _, sample in trainer.trained:
        groups.setdefault(sample.group_id, set()).add(sample.reward)
    assert len(groups) == config.train.tasks_per_step * config.train.steps, "whole steps, replaced groups"
    assert all(len(rewards) > 1 for rewards in groups.values()), "no constant group was trained"
    assert all(row["rollout/replacement_cap_hit"] == 0 for row in result.history)
    ran = sum(row["rollout/episodes"] for row in result.history)
    assert ran == (config.train.tasks_per_step * config.train.steps + dropped) * config.rollout.group_size


async def test_replacement_cap_stops_a_step_of_only_constant_groups(tmp_path: Path, tiny_dir: Path) -> None:
    data = make_config(tmp_path, tiny_dir, steps=1, tasks_per_step=1, drop_constant_groups=True)
    data["workflow"] = f"{ROOT / 'tests/workflows'}/async_probe.py:ConstantOnEvenTasksWorkflow"
    (tmp_path / "tasks.jsonl").write_text('{"task_id": "t0", "main_query": "zero"}\n')  # constant only
    del data["data"]["val"]
    config = parse_config(data, base_dir=ROOT)
    runtime = await build_runtime(config, store=MemoryStore())
    try:
        result = await Trainer(config, runtime, ConstantOnEvenTasksWorkflow).run()
    finally:
        await runtime.close()
    row = result.history[0]
    assert row["rollout/dropped_constant_groups"] == 4 and row["rollout/replacement_cap_hit"] == 1
    assert row["rollout/episodes"] == 5 * config.rollout.group_size


def test_truncated_importance_weights_by_hand() -> None:
    proximal = torch.tensor([math.log(0.5), math.log(0.9), 0.0, math.log(0.1)])
    behaviour = torch.tensor([math.log(0.25), math.log(0.9), -3.0, math.log(0.5)])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    weights, raw = truncated_is_weights(proximal, behaviour, mask, cap=1.5)
    # 0.5 / 0.25 = 2 -> cut to 1.5; 0.9 / 0.9 = 1; untrained -> 1; 0.1 / 0.5 = 0.2
    torch.testing.assert_close(raw, torch.tensor([2.0, 1.0, 1.0, 0.2]))
    torch.testing.assert_close(weights, torch.tensor([1.5, 1.0, 1.0, 0.2]))


@pytest.fixture
def training(tiny_model_and_tokenizer: tuple[Any, Any]) -> TrainingEngine:
    import copy

    model, _ = tiny_model_and_tokenizer
    return TrainingEngine(copy.deepcopy(model), pad_id=0, optimizer=OptimizerSettings(lr=1e-12))


def sample(version: int, ids: list[int], mask: list[int]) -> Sample:
    return Sample(ids, mask, [0.0] * len(ids), 1.0, "ep", "grp", "default", "default", 1.0, version=version)


def test_stale_samples_get_the_current_logprobs_and_their_weights(training: TrainingEngine) -> None:
    ids, mask = [5, 6, 7, 8, 9], [0, 0, 1, 1, 1]
    now = training.recompute_logprobs([sample(0, ids, mask)])[0]
    fresh = sample(1, ids, mask)
    stale = sample(0, ids, mask)
    # the behaviour log-probs: e^1 times less likely than now (weight e > cap 2), as likely, twice as likely
    stale.old_logprobs = [0.0, 0.0, now[2] - 1.0, now[3], now[4] + math.log(2.0)]
    out, metrics = correct_stale_samples(training, [fresh, stale], policy_version=1, cap=2.0)
    assert out[0] is fresh and not fresh.token_weights  # fresh: untouched, no weights
    torch.testing.assert_close(torch.tensor(out[1].old_logprobs), torch.tensor([0.0, 0.0, *now[2:]]))
    torch.testing.assert_close(torch.tensor(out[1].token_weights), torch.tensor([1.0, 1.0, 2.0, 1.0, 0.5]))
    assert metrics["off_policy/stale_samples"] == 1 and metrics["off_policy/staleness_max"] == 1
    assert metrics["off_policy/staleness_mean"] == 0.5
    assert metrics["off_policy/is_weight_mean"] == pytest.approx((2.0 + 1.0 + 0.5) / 3)
    assert metrics["off_policy/is_weight_max"] == pytest.approx(math.e, rel=1e-5)
    assert metrics["off_policy/truncated_frac"] == pytest.approx(1 / 3)


def test_token_weights_scale_the_per_token_loss(training: TrainingEngine) -> None:
    ids, mask = [5, 6, 7, 8, 9], [0, 0, 1, 1, 1]
    plain = sample(0, ids, mask)
    plain.old_logprobs = [x * m for x, m in zip(training.recompute_logprobs([plain])[0], mask, strict=True)]
    doubled = Sample(**{**plain.__dict__, "token_weights": [2.0] * len(ids)})
    loss = LossSettings(entropy_metric=False)
    first = training.train_step([plain], loss)["loss"]
    second = training.train_step([doubled], loss)["loss"]  # lr 1e-12: the policy has not moved
    assert first != 0.0
    assert second == pytest.approx(2 * first, rel=1e-4)
