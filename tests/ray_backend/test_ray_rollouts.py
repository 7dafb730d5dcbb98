"""Episodes on Ray workers: they run in the workers' processes, through the gateway over HTTP with their own
keys; a worker killed mid-episode gets its episode recorded as failed with the reason and rerun once on the
other worker, so the step has every episode exactly once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ajet import LabeledTask
from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.loading import load_workflow_factory
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import EpisodeStatus

PROBE = str(Path(__file__).parents[1] / "workflows" / "ray_probe.py")
TASKS = [
    LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5),
    LabeledTask(task_id="t2", main_query="What is 4 + 4?", label=8),
]


async def ray_runtime(
    tiny: tuple[Any, Any], workflow: dict[str, Any], gateway: dict[str, Any] | None = None
) -> Runtime:
    model, tokenizer = tiny
    config = parse_config(
        {
            "gateway": gateway or {},
            "workflow": workflow,
            "framework": "openai_sdk",
            "rollout": {
                "backend": "ray",
                "workers": 2,
                "group_size": 2,
                "max_concurrency": 2,  # one episode per worker at a time
                "episode_timeout_s": 60,
                "sampling": {"max_tokens": 4},
            },
        }
    )
    return await build_runtime(config, store=MemoryStore(), engine=TransformersEngine(model, tokenizer))


@pytest.fixture
async def probe_runtime(ray_instance: None, tiny_model_and_tokenizer: Any) -> AsyncIterator[Runtime]:
    runtime = await ray_runtime(tiny_model_and_tokenizer, {"path": f"{PROBE}:ReportsItsProcess"})
    try:
        yield runtime
    finally:
        await runtime.close()


async def test_episodes_run_in_the_workers_processes_and_are_recorded(probe_runtime: Runtime) -> None:
    runtime = probe_runtime
    episodes = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run(TASKS)
    assert len(episodes) == 4 and all(e.status == EpisodeStatus.OK for e in episodes), [
        e.error for e in episodes
    ]
    pids = {e.worker["pid"] for e in episodes}
    assert os.getpid() not in pids and len(pids) == 2, "both workers ran episodes, none ran here"
    for episode in episodes:
        assert episode.worker["backend"] == "ray" and episode.metadata["pid"] == episode.worker["pid"]
        (call,) = runtime.store.calls(episode.episode_id)
        assert call.trainable and len(call.completion_ids or []) == len(call.logprobs or []) > 0
        # the keys died with the episode
        assert runtime.gateway.keys.untrained_calls(episode.episode_id) == {}
    # a second batch reuses the same workers (they live as long as the run)
    again = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run(TASKS[:1])
    assert {e.worker["pid"] for e in again} <= pids


async def test_a_killed_worker_s_episode_is_failed_and_retried_once_elsewhere(
    ray_instance: None, tiny_model_and_tokenizer: Any, tmp_path: Path
) -> None:
    workflow = {"path": f"{PROBE}:KillsItsWorkerOnce", "args": {"marker_dir": str(tmp_path)}}
    runtime = await ray_runtime(tiny_model_and_tokenizer, workflow)
    try:
        episodes = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run(TASKS)
        # every (task, repeat) exactly once in the step, each finished OK
        assert [(e.task_id, e.repeat_index) for e in episodes] == [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
        assert all(e.status == EpisodeStatus.OK for e in episodes), [e.error for e in episodes]
        (retry,) = [e for e in episodes if e.retry_of is not None]
        assert (retry.task_id, retry.repeat_index) == ("t1", 0)
        lost = runtime.store.get_episode(retry.retry_of or "")
        assert lost.status == EpisodeStatus.FAILED and lost.error and lost.error.startswith("worker lost:")
        assert lost.group_id == retry.group_id and lost.repeat_index == retry.repeat_index
        assert lost.worker["worker"] != retry.worker["worker"], "retried on the other worker"
        killed_pid = int((tmp_path / f"{retry.task_id}-0").read_text())
        assert retry.worker["pid"] != killed_pid
        # the lost attempt's call stays with the lost attempt: never trained as the retry's
        assert len(runtime.store.calls(lost.episode_id)) == 1
        assert len(runtime.store.calls(retry.episode_id)) == 1
        # the record has the 4 episodes of the step plus the lost attempt, nothing else
        assert len(runtime.store.episodes(runtime.run_id)) == 5
    finally:
        await runtime.close()


async def test_a_worker_blocked_past_the_timeout_is_timed_out_and_restarted(
    ray_instance: None, tiny_model_and_tokenizer: Any
) -> None:
    runtime = await ray_runtime(tiny_model_and_tokenizer, {"path": f"{PROBE}:BlocksItsWorker"})
    runtime.config.rollout.ray.hang_grace_s = 1.0
    executor = RolloutExecutor(runtime, load_workflow_factory(runtime.config))
    executor.settings.episode_timeout_s = (
        8.0  # ample for the others on a busy machine; the victim blocks 30 s
    )
    try:
        episodes = await executor.run(TASKS)
        assert len(episodes) == 4
        stuck = episodes[0]
        assert stuck.status == EpisodeStatus.TIMED_OUT and "did not answer" in (stuck.error or "")
        assert stuck.error and "rollout.ray.hang_grace_s" in stuck.error
        # the others finished, on the other worker or as retries of what the restart took down
        assert all(e.status == EpisodeStatus.OK for e in episodes[1:]), [e.error for e in episodes]
    finally:
        await runtime.close()


async def test_an_episode_lost_twice_stays_failed_and_is_not_tried_a_third_time(
    ray_instance: None, tiny_model_and_tokenizer: Any, tmp_path: Path
) -> None:
    args = {"marker_dir": str(tmp_path), "always": True}
    runtime = await ray_runtime(
        tiny_model_and_tokenizer, {"path": f"{PROBE}:KillsItsWorkerOnce", "args": args}
    )
    try:
        first, second = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run(TASKS[:1])
        assert second.status == EpisodeStatus.OK
        assert first.status == EpisodeStatus.FAILED and first.retry_of is not None
        assert first.error and "not retried again" in first.error
        lost = runtime.store.get_episode(first.retry_of)
        assert lost.error and "rolled out again on another worker" in lost.error
        assert len(runtime.store.episodes(runtime.run_id)) == 3
    finally:
        await runtime.close()


async def test_workers_reach_a_gateway_on_the_network_through_its_advertised_address(
    ray_instance: None, tiny_model_and_tokenizer: Any
) -> None:
    gateway = {"host": "0.0.0.0", "allow_remote": True}
    runtime = await ray_runtime(tiny_model_and_tokenizer, {"path": f"{PROBE}:ReportsItsProcess"}, gateway)
    try:
        assert runtime.advertised_url and not runtime.advertised_url.startswith(
            ("http://0.0.0.0", "http://127.")
        )
        episodes = await RolloutExecutor(runtime, load_workflow_factory(runtime.config)).run(TASKS[:1])
        assert all(e.status == EpisodeStatus.OK for e in episodes), [e.error for e in episodes]
        assert all(len(runtime.store.calls(e.episode_id)) == 1 for e in episodes)
    finally:
        await runtime.close()
