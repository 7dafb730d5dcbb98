"""The episode API of `ajet serve` (the `remote` rollout backend), over real HTTP: the executor offers episodes,
clients claim them with the server token, call the gateway with the keys they get, heartbeat and finish. A
client that goes quiet loses its lease: the attempt is recorded as timed out and the task offered again, so
nothing is lost and nothing counted twice. Double finishes, foreign keys and bad bodies are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.remote_protocol import openapi_schema
from ajet.core.rollout import RolloutExecutor, RolloutSettings
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from ajet.remote import EpisodeClient, EpisodeRefused, RunFinished

TOKEN = "test-server-token"
TASKS = [LabeledTask(task_id=f"t{i}", main_query=f"What is {i} + 1?", label=i + 1) for i in range(2)]


@pytest.fixture
async def runtime(
    tiny_model_and_tokenizer: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("AJET_SERVER_TOKEN", TOKEN)
    model, tokenizer = tiny_model_and_tokenizer
    config = parse_config(
        {
            "rollout": {
                "backend": "remote",
                "group_size": 2,
                "sampling": {"max_tokens": 4},
                "remote": {"lease_s": 0.6, "max_reoffers": 1},
            },
            "run_dir": str(tmp_path / "run"),
        }
    )
    rt = await build_runtime(config, store=MemoryStore(), engine=TransformersEngine(model, tokenizer))
    try:
        yield rt
    finally:
        await rt.close()


def client_for(runtime: Runtime, token: str = TOKEN) -> EpisodeClient:
    assert runtime.advertised_url is not None
    return EpisodeClient(runtime.advertised_url, token, name="pytest")


def start_rollouts(runtime: Runtime, tasks: list[LabeledTask]) -> asyncio.Task[list[Episode]]:
    executor = RolloutExecutor(runtime, None, RolloutSettings(group_size=2, episode_timeout_s=60, seed=3))
    return asyncio.create_task(executor.run(tasks))


def chat(episode: Any, agent: str = "default") -> httpx.Response:
    grant = episode.agents[agent]
    return httpx.post(
        f"{grant.base_url}/chat/completions",
        json={"model": grant.model, "messages": [{"role": "user", "content": episode.task.main_query}]},
        headers={"Authorization": f"Bearer {grant.api_key}"},
        timeout=60,
    )


async def test_claim_call_finish_is_recorded_with_the_clients_reward(runtime: Runtime) -> None:
    rollouts = start_rollouts(runtime, TASKS[:1])
    with client_for(runtime) as client:
        seen = []
        for reward in (1.0, 0.0):
            episode = await asyncio.to_thread(client.claim, ["solver"], wait_s=10)
            assert episode is not None
            assert episode.task.task_id == "t0" and not hasattr(episode.task, "label")  # no label
            assert episode.agents["solver"].trainable and episode.agents["solver"].target_tag == "solver"
            reply = await asyncio.to_thread(chat, episode, "solver")
            assert reply.status_code == 200, reply.text
            await asyncio.to_thread(episode.heartbeat)
            await asyncio.to_thread(episode.finish, reward, is_success=reward > 0, metadata={"who": "pytest"})
            seen.append(episode.episode_id)
    episodes = await asyncio.wait_for(rollouts, 30)
    assert [e.episode_id for e in episodes] == seen
    assert [e.status for e in episodes] == [EpisodeStatus.OK, EpisodeStatus.OK]
    assert [e.reward for e in episodes] == [1.0, 0.0] and episodes[0].metadata == {"who": "pytest"}
    assert episodes[0].worker["backend"] == "remote" and episodes[0].worker["worker"] == "pytest"
    for episode in episodes:  # each call recorded under its own episode, token for token
        calls = runtime.store.calls(episode.episode_id)
        assert len(calls) == 1 and calls[0].agent_name == "solver" and calls[0].completion_ids


async def test_a_second_finish_and_a_foreign_key_are_refused(runtime: Runtime) -> None:
    rollouts = start_rollouts(runtime, TASKS[:1])
    with client_for(runtime) as client:
        first = await asyncio.to_thread(client.claim, [], wait_s=10)
        second = await asyncio.to_thread(client.claim, [], wait_s=10)
        assert first is not None and second is not None
        # finishing the first episode with the second's key: 403, and nothing is recorded for either
        response = await asyncio.to_thread(
            client._post, f"/{first.episode_id}/finish", second.claimed.episode_key, {"reward": 1.0}
        )
        assert response.status_code == 403 and response.json()["error"]["code"] == "foreign_episode_key"
        response = await asyncio.to_thread(client._post, f"/{first.episode_id}/finish", "wrong", {})
        assert response.status_code == 401
        await asyncio.to_thread(first.finish, 1.0)
        with pytest.raises(EpisodeRefused) as refused:
            await asyncio.to_thread(first.finish, 0.0)
        assert refused.value.status == 409 and refused.value.code == "episode_ended"
        await asyncio.to_thread(second.abort, "my agent crashed")
    episodes = await asyncio.wait_for(rollouts, 30)
    assert [(e.status, e.reward) for e in episodes] == [(EpisodeStatus.OK, 1.0), (EpisodeStatus.FAILED, None)]
    assert episodes[1].error == "aborted by the client: my agent crashed"


async def test_a_silent_client_loses_its_lease_and_the_task_is_offered_again(runtime: Runtime) -> None:
    rollouts = start_rollouts(runtime, TASKS[:1])
    with client_for(runtime) as client:
        silent = await asyncio.to_thread(client.claim, [], wait_s=10)  # no heartbeats: a killed laptop
        assert silent is not None
        other = await asyncio.to_thread(client.claim, [], wait_s=10)
        assert other is not None
        other.start_heartbeats()
        retry = await asyncio.to_thread(client.claim, [], wait_s=10)  # offered again after the lease expires
        assert retry is not None and retry.repeat_index == silent.repeat_index
        assert retry.group_id == silent.group_id and retry.task == silent.task
        await asyncio.to_thread(retry.finish, 1.0)
        await asyncio.to_thread(other.finish, 0.0)  # heartbeats kept this one alive past several leases
        with pytest.raises(EpisodeRefused) as late:  # the silent client comes back: its episode is gone
            await asyncio.to_thread(silent.finish, 1.0)
        assert late.value.status == 409 and "lease expired" in str(late.value)
    episodes = await asyncio.wait_for(rollouts, 30)
    assert {e.episode_id for e in episodes} == {retry.episode_id, other.episode_id}
    assert sorted(e.reward for e in episodes) == [0.0, 1.0]  # each slot counted once
    lost = runtime.store.get_episode(silent.episode_id)
    assert lost.status == EpisodeStatus.TIMED_OUT and "lease expired" in (lost.error or "")
    assert runtime.store.get_episode(retry.episode_id).retry_of == silent.episode_id
    assert len(runtime.store.episodes()) == 3


async def test_reoffers_stop_at_max_reoffers(runtime: Runtime) -> None:
    rollouts = start_rollouts(runtime, TASKS[:1])
    with client_for(runtime) as client:
        for _ in range(4):  # 2 episodes x (1 offer + 1 re-offer), all abandoned
            assert await asyncio.to_thread(client.claim, [], wait_s=10) is not None
    episodes = await asyncio.wait_for(rollouts, 30)
    assert [e.status for e in episodes] == [EpisodeStatus.TIMED_OUT, EpisodeStatus.TIMED_OUT]
    assert all(e.retry_of is not None and "not retried again" in (e.error or "") for e in episodes)


async def test_bad_requests_get_4xx_and_a_finished_run_410(runtime: Runtime) -> None:
    assert runtime.advertised_url is not None
    claim_url = f"{runtime.advertised_url}/ajet/episodes/claim"
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(claim_url, json={}, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and "AJET_SERVER_TOKEN" in refused.json()["error"]["message"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bad = await http.post(claim_url, json={"wait_s": 0, "agents": [{"agent_nam": "x"}]}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("agents.0")
        empty = await http.post(claim_url, json={"wait_s": 0.1}, headers=auth)
        assert empty.status_code == 204  # nothing offered: ask again
        unknown = await http.post(f"{runtime.advertised_url}/ajet/episodes/ep-x/heartbeat", headers=auth)
        assert unknown.status_code == 404
        schema = await http.get(f"{runtime.advertised_url}/ajet/openapi.json")
        assert schema.status_code == 200 and "/v1/ajet/episodes/claim" in schema.json()["paths"]
        assert schema.json()["components"]["schemas"]["ClaimedEpisode"]["properties"]["episode_key"]
    assert runtime.rollouts is not None
    await runtime.rollouts.aclose()
    with client_for(runtime) as client, pytest.raises(RunFinished):
        await asyncio.to_thread(client.claim, [], wait_s=1)


def test_the_openapi_schema_resolves_every_reference() -> None:
    schema = openapi_schema("http://127.0.0.1:8765/v1")
    text = str(schema)
    names = set(schema["components"]["schemas"])
    for ref in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in names, ref
