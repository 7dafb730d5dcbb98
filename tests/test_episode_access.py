"""The serialisable rollout boundary: an episode is a task, the gateway's URL and an episode key. A tuner built
from that alone, in another process, reaches the gateway over HTTP and is recorded under its own episode; the
gateway, not the asker, decides which agents are trained; keys die with the episode; bad requests get 4xx."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.episode_access import EpisodeAccess, HttpAgentKeys
from ajet.core.gateway.keys import AgentKeyRequest, EpisodeGrant, UnknownEpisodeKey
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, LabeledTask

TASK = LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    model, tokenizer = tiny_model_and_tokenizer
    config = parse_config({"workflow": "unused:Unused", "rollout": {"sampling": {"max_tokens": 4}}})
    rt = await build_runtime(config, store=MemoryStore(), engine=TransformersEngine(model, tokenizer))
    try:
        yield rt
    finally:
        await rt.close()


def open_episode(runtime: Runtime, **grant: Any) -> tuple[Episode, EpisodeAccess]:
    episode = Episode(task=TASK, group_id="g")
    runtime.store.add_episode(episode)
    key = runtime.gateway.keys.open_episode(EpisodeGrant(episode_id=episode.episode_id, **grant))
    assert runtime.advertised_url is not None
    access = EpisodeAccess(
        episode_id=episode.episode_id,
        group_id="g",
        task=TASK.without_label(),
        base_url=runtime.advertised_url,
        episode_key=key,
        framework="openai_sdk",
        trainable_targets=grant.get("trainable_targets"),
    )
    return episode, access


def run_worker(script: str, access: EpisodeAccess) -> dict[str, Any]:
    """Run `script` in a fresh Python process with the access on its stdin; returns the JSON it prints."""
    worker = subprocess.run(
        [sys.executable, "-c", script],
        input=access.model_dump_json(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stderr
    return dict(json.loads(worker.stdout))


WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from ajet.core.episode_access import EpisodeAccess
    from ajet.core.plugins import load_registry
    from ajet.core.tuner import AjetTuner

    async def main():
        access = EpisodeAccess.model_validate_json(sys.stdin.read())
        tuner = AjetTuner(access, load_registry())
        client = tuner.as_raw_openai_sdk_client(agent_name="solver")
        reply = await client.chat.completions.create(
            model="ajet-policy", messages=[{"role": "user", "content": access.task.main_query}], max_tokens=4
        )
        critic = tuner.handle(agent_name="critic", target_tag="critic")
        print(json.dumps({"pid": os.getpid(), "finish": reply.choices[0].finish_reason,
                          "solver_trained": tuner.handle(agent_name="solver").trainable,
                          "critic_trained": critic.trainable}))

    asyncio.run(main())
    """
)


async def test_a_tuner_rebuilt_from_the_access_in_another_process_is_recorded(runtime: Runtime) -> None:
    episode, access = open_episode(runtime, trainable_targets=["default"])
    answer = run_worker(WORKER, access)
    assert answer["finish"] in ("stop", "length")
    # the grant decides: "solver" has target tag "solver", which this episode does not train
    assert answer["solver_trained"] is False and answer["critic_trained"] is False
    assert runtime.gateway.keys.untrained_calls(episode.episode_id) == {"solver": 1}
    assert runtime.store.calls(episode.episode_id) == []  # untrained calls are served, not recorded


async def test_trained_agents_of_a_worker_are_recorded_under_its_episode(runtime: Runtime) -> None:
    episode, access = open_episode(runtime)  # no targets: every agent is trained
    assert run_worker(WORKER, access)["solver_trained"] is True
    (call,) = runtime.store.calls(episode.episode_id)
    assert (
        call.agent_name == "solver"
        and call.trainable
        and len(call.completion_ids or []) == len(call.logprobs or [])
    )


async def test_agent_keys_over_http_follow_the_grant_and_die_with_the_episode(runtime: Runtime) -> None:
    episode, access = open_episode(runtime, trainable_targets=["solver"], seed=11)
    keys = HttpAgentKeys(access.base_url, access.episode_key)
    solver = keys.issue(AgentKeyRequest(agent_name="a", target_tag="solver"))
    critic = keys.issue(AgentKeyRequest(agent_name="b", target_tag="critic"))
    assert solver.trainable and not critic.trainable and solver.api_key != critic.api_key
    bindings = [runtime.gateway.keys.resolve(k.api_key) for k in (solver, critic)]
    assert [b.seed for b in bindings if b] == [11, 11 + 15_485_863]  # the grant's seed, per agent in order
    async with httpx.AsyncClient(base_url=access.base_url) as http:
        # the episode key only issues agent keys: it cannot call the model itself
        as_agent = await http.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {access.episode_key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert as_agent.status_code == 401
        malformed = await http.post(
            "/ajet/agent_keys",
            headers={"Authorization": f"Bearer {access.episode_key}"},
            content=b"{not json",
        )
        assert malformed.status_code == 400
        unknown_field = await http.post(
            "/ajet/agent_keys",
            headers={"Authorization": f"Bearer {access.episode_key}"},
            json={"agent_name": "a", "trainable": True},  # a worker cannot ask to be trained
        )
        assert unknown_field.status_code == 400 and "trainable" in unknown_field.text
        forged = await http.post(
            "/ajet/agent_keys", headers={"Authorization": "Bearer ajet-episode-x"}, json={}
        )
        assert forged.status_code == 401
    runtime.gateway.keys.revoke_episode(episode.episode_id)
    with pytest.raises(UnknownEpisodeKey, match="finished"):
        keys.issue(AgentKeyRequest(agent_name="late"))
    assert runtime.gateway.keys.resolve(solver.api_key) is None


def test_an_unreachable_gateway_is_named() -> None:
    keys = HttpAgentKeys("http://127.0.0.1:9/v1", "ajet-episode-x", timeout_s=2)
    with pytest.raises(
        ConnectionError, match=r"could not reach the ajet gateway at http://127\.0\.0\.1:9/v1"
    ):
        keys.issue(AgentKeyRequest())


ADAPTERS_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from ajet.core.episode_access import EpisodeAccess
    from ajet.core.plugins import load_registry
    from ajet.core.tuner import AjetTuner

    async def main():
        access = EpisodeAccess.model_validate_json(sys.stdin.read())
        tuner = AjetTuner(access, load_registry())
        chat = tuner.as_langchain_model(agent_name="lc", max_tokens=4)
        await chat.ainvoke("async hello")
        await asyncio.to_thread(chat.invoke, "sync hello")  # LangChain's sync path, over HTTP too
        from agentscope.message import UserMsg

        model = tuner.as_agentscope_model(agent_name="as")
        await model([UserMsg(name="user", content="hello")])
        print(json.dumps({"base_url": chat.openai_api_base}))

    asyncio.run(main())
    """
)


async def test_framework_adapters_reach_the_gateway_over_http_from_another_process(runtime: Runtime) -> None:
    episode, access = open_episode(runtime)
    assert (
        run_worker(ADAPTERS_WORKER, access)["base_url"] == access.base_url
    )  # the real URL, not the in-process one
    calls = runtime.store.calls(episode.episode_id)
    assert [c.agent_name for c in calls] == ["lc", "lc", "as"]
    assert all(c.trainable and c.completion_ids for c in calls)


def test_a_wildcard_gateway_is_advertised_with_this_machine_s_address() -> None:
    from ajet.core.runtime import reachable_url

    assert reachable_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    advertised = httpx.URL(reachable_url("http://0.0.0.0:8000/v1"))
    assert advertised.host not in ("0.0.0.0", "") and advertised.port == 8000 and advertised.path == "/v1"
