"""examples/werewolves end to end. Through the `ajet` CLI with SmolLM2-135M (slow): nine AgentScope agents play one
short game (one round, no discussion, short answers) and only the trained role's calls are recorded; then a 2-step
training run on the same game. In-process with the tiny random model: `debug_model` sends the untrained roles to
another OpenAI-compatible server. The answers are mostly nonsense: the rules' fallbacks keep every game going."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ajet.core.config import parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.keys import KeyBinding
from ajet.core.models import build_tiny_model
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.tasks import import_object
from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from tests.examples.cli import ROOT, explain, run_ajet, train_two_steps

EXAMPLE = ROOT / "examples" / "werewolves"
CONFIG = EXAMPLE / "config.yaml"
GOOD_ROLES = {"villager", "seer", "witch", "hunter"}
ALL_ROLES = GOOD_ROLES | {"werewolf"}
# A game of one night and one vote: about 15 calls, all short.
SHORT_GAME = (
    "--set", "workflow.args.max_rounds=1",
    "--set", "workflow.args.discussion=false",
    "--set", "workflow.args.max_tokens=8",
)  # fmt: skip


def debug_one_game(out: Path, *extra: str) -> dict[str, Any]:
    result = run_ajet(
        "debug", "-c", str(CONFIG), "--tasks", "1", "--store", "memory", "--out", str(out), "--strict",
        "--set", "rollout.group_size=1", *SHORT_GAME, *extra,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    (episode,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert episode["status"] == "ok", episode["error"]
    meta = episode["metadata"]
    assert meta["winner"] in ("werewolves", "village", "draw") and meta["rounds"] == 1
    assert sorted(meta["roles"].values()).count("werewolf") == 3 and len(meta["roles"]) == 9
    assert episode["target_rewards"].keys() == ALL_ROLES
    for call in episode["calls"]:
        assert call["trainable"] and call["prompt_ids"] and call["completion_ids"]
        assert len(call["logprobs"]) == len(call["completion_ids"])
        assert meta["roles"][call["agent_name"]] == call["target_tag"], (
            "a call is tagged with its player's role"
        )
        assert call["messages"][0]["role"] == "system" and call["agent_name"] in str(call["messages"][0])
    return episode


@pytest.mark.slow
def test_debug_records_only_the_werewolves(tmp_path: Path) -> None:
    episode = debug_one_game(tmp_path / "werewolves.jsonl")
    calls = episode["calls"]
    # Night 1: three werewolf picks; day 1: the living werewolves vote.
    assert len(calls) >= 4 and {c["target_tag"] for c in calls} == {"werewolf"}
    assert episode["metadata"]["trained_roles"] == ["werewolf"]
    # The other roles played (on the policy, untrained): counted, not recorded.
    assert "werewolf" not in episode["untrained_calls"]
    assert {"seer", "villager"} <= episode["untrained_calls"].keys()
    wolves_won = episode["metadata"]["winner"] == "werewolves"
    expected = 1.0 if wolves_won else 0.5 if episode["metadata"]["winner"] == "draw" else 0.0
    assert episode["reward"] == episode["target_rewards"]["werewolf"] == expected


@pytest.mark.slow
def test_training_the_good_side_is_a_config_change(tmp_path: Path) -> None:
    episode = debug_one_game(
        tmp_path / "village.jsonl", "--set", "trainable_targets=[villager, seer, witch, hunter]"
    )
    tags = {c["target_tag"] for c in episode["calls"]}
    assert "werewolf" not in tags and {"seer", "villager"} <= tags <= GOOD_ROLES
    assert episode["untrained_calls"].get("werewolf", 0) >= 3, "the werewolves still played, untrained"
    assert episode["metadata"]["trained_roles"] == sorted(GOOD_ROLES)
    assert episode["reward"] == episode["target_rewards"]["villager"]


@pytest.mark.slow
def test_train_two_steps(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    steps = train_two_steps(
        CONFIG, run_dir,
        "--set", "rollout.group_size=2", "--set", "train.tasks_per_step=1", "--set", "data.val=null",
        *SHORT_GAME,
    )  # fmt: skip
    for step in steps:
        assert step["rollout/episodes"] == 2.0 and step["rollout/reward_mean"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert step["samples/trained"] > 0 and math.isfinite(step["train/grad_norm"])


async def test_debug_model_serves_the_untrained_roles(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    """`workflow.args.debug_model` (an OpenAI-compatible endpoint: here a second ajet gateway on loopback HTTP,
    standing for a stronger model's server) answers every untrained player; the trained ones stay on the policy."""
    small = {"gateway": {"http": False}, "rollout": {"group_size": 1, "sampling": {"max_tokens": 4}}}
    remote = await build_runtime(
        parse_config({"workflow": "unused:Unused", "model": {"served_name": "strong-model"}}),
        store=MemoryStore(),
        engine=TransformersEngine(*build_tiny_model(seed=1)),  # its own engine: it serves from its own thread
    )
    runtime = await build_runtime(
        parse_config({"workflow": "unused:Unused", **small}),
        store=MemoryStore(),
        engine=TransformersEngine(*tiny_model_and_tokenizer),
    )
    try:
        remote_episode = Episode(task=LabeledTask(task_id="remote", main_query="-"), group_id="remote")
        remote.store.add_episode(remote_episode)
        remote_key = remote.gateway.keys.issue(KeyBinding(episode_id=remote_episode.episode_id))
        endpoint = {"base_url": remote.gateway.base_url, "api_key": remote_key, "model": "strong-model"}
        workflow = import_object(f"{EXAMPLE / 'workflow.py'}:WerewolvesWorkflow")
        tasks = list(import_object(f"{EXAMPLE / 'workflow.py'}:game_tasks")(count=1))

        def make() -> Any:
            return workflow(debug_model=endpoint, max_rounds=1, discussion=False, max_tokens=4)

        (episode,) = await RolloutExecutor(runtime, make).run(tasks)
        assert episode.status == EpisodeStatus.OK, episode.error
        calls = runtime.store.calls(episode.episode_id)
        assert len(calls) >= 4 and {c.target_tag for c in calls} == {"werewolf"}
        remote_calls = remote.store.calls(remote_episode.episode_id)
        assert len(remote_calls) == sum(episode.untrained_calls.values()) > 0
        prompts = {str(c.messages[0]["content"]) for c in remote_calls}
        assert any("You are the seer." in p for p in prompts)
        assert not any("You are a werewolf." in p for p in prompts), "a trained role reached the debug model"
    finally:
        await runtime.close()
        await remote.close()
