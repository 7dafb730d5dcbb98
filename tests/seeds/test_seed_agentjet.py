"""Seed 000, AgentJet's "Trainable Workflow": its code run through `ajet debug` (and, for the multi-agent one, a
1-step `ajet train`) on the tiny random model. The seed's code is AgentScope 1.x: the `*_1x` cases run in the
1.x CI environment (`.ci/agentscope1.sh`) and skip on 2.x, where a 2.x rendering of the same code runs
(`Agent` for `ReActAgent`, the formatter given to the model).

- Simple Practice: `model = tuner.as_agentscope_model()` in `ReActAgent(name="Friday", ...)`.
- Advanced Practice: `ExampleWerewolves` with `trainable_targets: List[str] | None = Field(default=["werewolf"])`,
  its asserts, `DashScopeMultiAgentFormatter() if role in self.trainable_targets else
  OpenAIMultiAgentFormatter()`, `max_iters`, and `debug_model=OpenAIChatModel(...)` for the untrained roles
  (its endpoint, `OPENAI_BASE_URL`, is a loopback stand-in for the remote model). The native debug models'
  calls are counted in `untrained_calls`, and their failures too: an unreachable endpoint, which the seed's
  own `except` turns into reward -0.1, shows as failed untrained calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.examples.cli import debug_episodes, explain, run_ajet
from tests.seeds.helpers import closed_port_url, needs_agentscope, openai_server, train_one_step, write_config

SIMPLE = {1: "agentjet_simple.py:MyWorkflow", 2: "agentjet_simple_v2.py:MyWorkflow"}
WEREWOLVES = {
    1: "agentjet_werewolves.py:ObservedExampleWerewolves",
    2: "agentjet_werewolves_v2.py:ObservedExampleWerewolves",
}
MAJORS = [pytest.param(1, id="1x"), pytest.param(2, id="2x")]


@pytest.mark.parametrize("major", MAJORS)
def test_simple_practice(major: int, tmp_path: Path, tiny_model_dir: Path) -> None:
    needs_agentscope(major)
    judger = {"path": "numeric_match", "args": {"field": "answer"}}
    config = write_config(tmp_path, tiny_model_dir, SIMPLE[major], "math_tasks", judger=judger)
    (episode,) = debug_episodes(config, tmp_path / "out.jsonl")
    assert episode["calls"] and episode["reward"] in (0.0, 1.0)
    for call in episode["calls"]:
        assert call["trainable"] and call["agent_name"] == "default" and call["completion_ids"]
        system = call["messages"][0]
        assert system["role"] == "system" and text_of(system) == "You are a helpful assistant"


def text_of(message: dict[str, Any]) -> str:
    """A message's text: a string (1.x's DashScope formatter joins the parts) or OpenAI text parts (2.x)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def werewolves(tmp_path: Path, model_dir: Path, major: int) -> Path:
    return write_config(tmp_path, model_dir, WEREWOLVES[major], "game_tasks")


def check_game(episode: dict[str, Any], trained: set[str], remote_requests: int) -> None:
    """The trained roles' calls recorded under their player's name and role; every other player served by its
    native debug model, counted (not recorded); the seed's reward computed for the trained side."""
    meta = episode["metadata"]
    assert meta["trainable_targets"] == sorted(trained), "self.trainable_targets inside execute"
    tags = {c["target_tag"] for c in episode["calls"]}
    assert episode["calls"] and tags <= trained, tags
    assert all(c["agent_name"].startswith("Player") for c in episode["calls"])
    untrained = episode["untrained_calls"]
    assert not trained & untrained.keys() and untrained, untrained
    assert not any(tag.endswith(" (failed)") for tag in untrained), untrained
    assert sum(untrained.values()) == remote_requests, "each native debug-model call is counted"
    village_won = meta["winner"] == "village"
    trained_village = "werewolf" not in trained
    assert episode["reward"] == float(village_won == trained_village), (meta, episode["reward"])
    assert episode["is_success"] is (village_won == trained_village)


@pytest.mark.parametrize("major", MAJORS)
def test_advanced_werewolves(
    major: int, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_agentscope(major)
    with openai_server() as remote:
        monkeypatch.setenv("OPENAI_BASE_URL", remote.base_url)
        (episode,) = debug_episodes(werewolves(tmp_path, tiny_model_dir, major), tmp_path / "out.jsonl")
        check_game(episode, {"werewolf"}, len(remote.requests))
    assert {r["model"] for r in remote.requests} == {"Qwen/Qwen3-235B-A22B-Instruct-2507"}


@pytest.mark.parametrize("major", MAJORS)
def test_advanced_werewolves_config_override(
    major: int, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--set 'trainable_targets=[villager]'`: the villagers are trained, `self.trainable_targets` inside
    `execute` is ['villager'] (the seed's asserts, formatters, max_iters and reward read it), and the reward is
    the villagers'. (Needs the rollout to set the config's targets on the workflow before `execute`.)"""
    needs_agentscope(major)
    with openai_server() as remote:
        monkeypatch.setenv("OPENAI_BASE_URL", remote.base_url)
        config = werewolves(tmp_path, tiny_model_dir, major)
        (episode,) = debug_episodes(config, tmp_path / "out.jsonl", "--set", "trainable_targets=[villager]")
        check_game(episode, {"villager"}, len(remote.requests))


@pytest.mark.parametrize("major", MAJORS)
def test_advanced_werewolves_unreachable_debug_model_is_visible(
    major: int, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's `except Exception` turns a failed game into reward -0.1 and the episode is 'ok'; the failed
    calls of the native debug models are counted, and the debug table and log say so."""
    needs_agentscope(major)
    monkeypatch.setenv("OPENAI_BASE_URL", closed_port_url())
    out = tmp_path / "out.jsonl"
    result = run_ajet(
        "debug", "-c", str(werewolves(tmp_path, tiny_model_dir, major)), "--store", "memory", "--out", str(out),
        "--set", "rollout.episode_timeout_s=300",
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    (episode,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert episode["status"] == "ok" and episode["reward"] == -0.1, "the seed's own except"
    failed = {tag: n for tag, n in episode["untrained_calls"].items() if tag.endswith(" (failed)")}
    assert failed and all(tag.removesuffix(" (failed)") != "werewolf" for tag in failed), episode[
        "untrained_calls"
    ]
    assert "untrained call(s) failed" in result.stdout, "ajet debug shows the failed untrained calls"
    assert "the debug_model of Player" in result.stderr + result.stdout, "a warning names the agent"


@pytest.mark.slow
@pytest.mark.parametrize("major", MAJORS)
def test_advanced_werewolves_trains_one_step(
    major: int, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_agentscope(major)
    with openai_server() as remote:
        monkeypatch.setenv("OPENAI_BASE_URL", remote.base_url)
        step = train_one_step(werewolves(tmp_path, tiny_model_dir, major), tmp_path / "run")
    assert step["rollout/episodes"] == 2.0 and step["rollout/reward_mean"] in (0.0, 0.5, 1.0)
    assert remote.requests, "the untrained roles played on their debug model"
