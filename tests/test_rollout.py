"""The rollout executor end to end: real tiny model, real gateway (in-process and loopback HTTP), real store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.keys import OpenAIEndpoint, split_untrained
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import EpisodeStatus

TASKS = [
    LabeledTask(task_id="t1", main_query="What is 2 + 3?", metadata={"a": 2}, label=5),
    LabeledTask(task_id="t2", main_query="What is 4 + 4?", metadata={"a": 4}, label=8),
]


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    model, tokenizer = tiny_model_and_tokenizer
    config = parse_config(
        {
            "workflow": "unused:Unused",
            "rollout": {"group_size": 2, "episode_timeout_s": 5, "sampling": {"max_tokens": 8}},
        }
    )
    engine = TransformersEngine(model, tokenizer)
    rt = await build_runtime(config, store=MemoryStore(), engine=engine)
    try:
        yield rt
    finally:
        await rt.close()


class OneCall(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        response = await client.chat.completions.create(
            model="ajet-policy", messages=[{"role": "user", "content": workflow_task.task.main_query}]
        )
        text = response.choices[0].message.content or ""
        return WorkflowOutput(reward=float(len(text) % 2), is_success=True, metadata={"text": text})


class SeesNoLabel(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        assert not hasattr(workflow_task.task, "label")
        return WorkflowOutput(reward=None, metadata={"a": workflow_task.task.metadata["a"]})


class Raises(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        raise RuntimeError("the agent fell over")


class Hangs(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


class IgnoresCancellation(Workflow):
    """Swallows the executor's cancellation and sleeps on; only the event loop's shutdown ends it."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


class ReturnsWrongType(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        return 1.0  # type: ignore[return-value]


class NanReward(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        return WorkflowOutput(reward=float("nan"))


async def test_episodes_run_and_every_call_is_recorded(runtime: Runtime) -> None:
    episodes = await RolloutExecutor(runtime, OneCall).run(TASKS)
    assert len(episodes) == 4
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 4
    assert len({e.group_id for e in episodes}) == 2  # one group per task
    assert [e.repeat_index for e in episodes] == [0, 1, 0, 1]
    tokenizer = runtime.engine.tokenizer
    for episode in episodes:
        stored = runtime.store.get_episode(episode.episode_id)
        assert stored.reward in (0.0, 1.0) and stored.started_at and stored.finished_at
        (call,) = runtime.store.calls(episode.episode_id)
        assert call.trainable and call.agent_name == "default"
        assert call.prompt_ids and call.completion_ids
        assert len(call.completion_ids) == len(call.logprobs)
        assert tokenizer.decode(call.completion_ids, skip_special_tokens=True) == call.completion_text
        assert call.response["content"] == stored.metadata["text"]


async def test_workflow_never_sees_the_label(runtime: Runtime) -> None:
    episodes = await RolloutExecutor(runtime, SeesNoLabel).run(TASKS)
    assert all(e.status == EpisodeStatus.OK for e in episodes), [e.error for e in episodes]
    assert episodes[0].reward is None and episodes[0].task.label == 5


@pytest.mark.parametrize(
    ("workflow", "status", "error"),
    [
        (Raises, EpisodeStatus.FAILED, "RuntimeError: the agent fell over"),
        (Hangs, EpisodeStatus.TIMED_OUT, "did not finish within"),
        (IgnoresCancellation, EpisodeStatus.TIMED_OUT, "did not finish within"),
        (ReturnsWrongType, EpisodeStatus.FAILED, "must return a WorkflowOutput"),
        (NanReward, EpisodeStatus.FAILED, "non-finite reward"),
    ],
)
async def test_a_bad_episode_is_recorded_and_the_run_goes_on(
    runtime: Runtime, workflow: type[Workflow], status: EpisodeStatus, error: str
) -> None:
    executor = RolloutExecutor(runtime, workflow)
    executor.settings.episode_timeout_s = 0.3
    executor.settings.group_size = 1
    bad = await executor.run(TASKS[:1])
    assert bad[0].status == status and error in (bad[0].error or "")
    if status == EpisodeStatus.FAILED:
        assert "Traceback" in (bad[0].traceback or "")
    # the same runtime keeps serving healthy episodes afterwards
    good = await RolloutExecutor(runtime, OneCall).run(TASKS[:1])
    assert good[0].status == EpisodeStatus.OK


async def test_concurrency_cap_is_respected(runtime: Runtime) -> None:
    running = 0
    peak = 0

    class Counts(Workflow):
        async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return WorkflowOutput(reward=1.0)

    executor = RolloutExecutor(runtime, Counts)
    executor.settings.max_concurrency = 3
    executor.settings.group_size = 5
    episodes = await executor.run(TASKS)
    assert len(episodes) == 10 and peak == 3


class TwoAgents(Workflow):
    trainable_targets: list[str] | None = ["solver"]

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        messages = [{"role": "user", "content": workflow_task.task.main_query}]
        for name, tag in (("Alice", "solver"), ("Bob", "critic")):
            client = tuner.as_raw_openai_sdk_client(agent_name=name, target_tag=tag)
            await client.chat.completions.create(model="ajet-policy", messages=messages)
        return WorkflowOutput(reward=1.0)


async def test_only_trained_agents_are_recorded_and_the_others_are_counted(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, TwoAgents)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS[:1])
    assert episode.status == EpisodeStatus.OK, episode.error
    calls = runtime.store.calls(episode.episode_id)
    assert [(c.agent_name, c.target_tag, c.trainable, c.seq) for c in calls] == [("Alice", "solver", True, 0)]
    assert episode.untrained_calls == {"critic": 1}
    assert runtime.store.get_episode(episode.episode_id).untrained_calls == {"critic": 1}

    # trainable_targets from the config (here the executor's settings) overrides the workflow's own
    executor.settings.trainable_targets = ["critic"]
    (episode,) = await executor.run(TASKS[:1])
    calls = runtime.store.calls(episode.episode_id)
    assert [(c.agent_name, c.target_tag) for c in calls] == [("Bob", "critic")]
    assert episode.untrained_calls == {"solver": 1}


class RewardsFromItsTargets(Workflow):
    """Like the seed's werewolves: the reward depends on which role `self.trainable_targets` says is trained."""

    trainable_targets: list[str] | None = ["werewolf"]

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        assert self.trainable_targets is not None
        trained = [tag for tag in ("werewolf", "villager") if tuner.is_trainable(tag)]
        good_guys_win = True
        reward = 1.0 if good_guys_win == (self.trainable_targets[0] != "werewolf") else 0.0
        return WorkflowOutput(reward=reward, metadata={"seen": self.trainable_targets, "tuner": trained})


async def test_config_trainable_targets_reach_the_workflow_instance(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, RewardsFromItsTargets)
    executor.settings.group_size = 1
    (default,) = await executor.run(TASKS[:1])
    assert default.metadata == {"seen": ["werewolf"], "tuner": ["werewolf"]} and default.reward == 0.0

    executor.settings.trainable_targets = ["villager"]
    (overridden,) = await executor.run(TASKS[:1])
    # the workflow's own reward code sees the config's targets, and agrees with the tuner's routing
    assert overridden.metadata == {"seen": ["villager"], "tuner": ["villager"]}
    assert overridden.reward == 1.0


class DebugEndpointDown(Workflow):
    """An untrained role on a debug endpoint that refuses connections; the workflow swallows the error, as the
    seed's werewolves code does."""

    trainable_targets: list[str] | None = ["solver"]

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        down = OpenAIEndpoint(base_url="http://127.0.0.1:9/v1", api_key="none", model="judge")
        client = tuner.as_raw_openai_sdk_client(agent_name="Bob", target_tag="critic", debug_model=down)
        try:
            await client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "hi"}])
        except Exception:
            return WorkflowOutput(reward=-0.1)
        return WorkflowOutput(reward=1.0)


async def test_a_failing_debug_endpoint_is_counted_on_the_episode(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, DebugEndpointDown)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS[:1])
    assert episode.status == EpisodeStatus.OK and episode.reward == -0.1
    assert split_untrained(episode.untrained_calls) == ({"critic": 1}, {"critic": 1})


class RolesRewarded(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        return WorkflowOutput(reward=0.5, target_rewards={"werewolf": True, "villager": 0})


async def test_per_role_rewards_are_stored_with_the_episode(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, RolesRewarded)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS[:1])
    stored = runtime.store.get_episode(episode.episode_id)
    assert stored.target_rewards == {"werewolf": 1.0, "villager": 0.0}
    assert (stored.reward_for("werewolf"), stored.reward_for("villager"), stored.reward_for("seer")) == (
        1.0,
        0.0,
        0.5,
    )


class OverLoopbackHttp(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        base_url, api_key = tuner.as_oai_baseurl_apikey()
        assert base_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}
        ) as http:
            response = await http.post(
                "/chat/completions",
                json={
                    "model": "ajet-policy",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                },
            )
        response.raise_for_status()
        return WorkflowOutput(reward=1.0, metadata={"key": api_key, "base_url": base_url})


async def test_base_url_and_api_key_work_over_loopback_and_die_with_the_episode(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, OverLoopbackHttp)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS[:1])
    assert episode.status == EpisodeStatus.OK, episode.error
    assert len(runtime.store.calls(episode.episode_id)) == 1
    # the episode is over: its key no longer writes anything
    async with httpx.AsyncClient(base_url=episode.metadata["base_url"]) as http:
        late = await http.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {episode.metadata['key']}"},
            json={"model": "ajet-policy", "messages": [{"role": "user", "content": "late"}]},
        )
    assert late.status_code == 401
    assert len(runtime.store.calls(episode.episode_id)) == 1


class FromSubprocess(Workflow):
    """An agent in another process (it could be any language) reaches the gateway with base_url + api_key."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        endpoint = tuner.as_oai_baseurl_apikey()
        script = textwrap.dedent(
            """
            import json, sys, urllib.request
            base_url, key = sys.argv[1], sys.argv[2]
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}],
                               "max_tokens": 4}).encode()
            request = urllib.request.Request(base_url + "/chat/completions", data=body,
                headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            print(json.load(urllib.request.urlopen(request))["choices"][0]["finish_reason"])
            """
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, endpoint.base_url, endpoint.api_key, stdout=subprocess.PIPE
        )
        stdout, _ = await process.communicate()
        return WorkflowOutput(
            reward=1.0, metadata={"finish": stdout.decode().strip(), "rc": process.returncode}
        )


async def test_a_subprocess_agent_is_recorded(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, FromSubprocess)
    executor.settings.group_size = 1
    executor.settings.episode_timeout_s = 60
    (episode,) = await executor.run(TASKS[:1])
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata["rc"] == 0 and episode.metadata["finish"] in ("stop", "length")
    assert len(runtime.store.calls(episode.episode_id)) == 1


async def test_trajectories_export_as_jsonl(runtime: Runtime, tmp_path: Any) -> None:
    episodes = await RolloutExecutor(runtime, OneCall).run(TASKS[:1])
    path = tmp_path / "out.jsonl"
    assert runtime.store.export_jsonl(path, run_id=runtime.run_id) == len(episodes)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["calls"][0]["completion_ids"]
