"""Seed 001, ASTuner's "Trainable Workflow": its code run through `ajet debug` (and, for the multi-agent one, a
1-step `ajet train`) on the tiny random model. The seed's code is AgentScope 1.x: those tests run in the 1.x CI
environment (`.ci/agentscope1.sh`) and skip on 2.x; on 2.x, the same code must fail naming the `agentscope1`
extra, and a 2.x rendering of each snippet (`Agent` for `ReActAgent`, the rest unchanged) runs instead.

- Simple: `ExampleMathLearn` with `model=model_tuner` (the tuner itself as the model), `self.toolkit = Toolkit()`
  and `self.agent = ReActAgent(...)` inside `execute`, `execute(self, task, model_tuner: ModelTuner)`.
- Advanced: nine players, each `model_tuner.register_model(role, default_model=OpenAIChatModel(...))` then
  `model=model_tuner.get_model(role)`, `trainable_targets = ["werewolf"]`: the werewolves are trained (recorded),
  the others are served by their native default model (here a loopback stand-in for the remote server), whose
  calls ajet counts but does not record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.examples.cli import debug_episodes, explain, run_ajet
from tests.seeds.helpers import needs_agentscope, openai_server, train_one_step, write_config

JUDGER = {"path": "numeric_match", "args": {"field": "final_answer"}}


def assert_default_agent_trained(episode: dict) -> None:
    """`model=model_tuner` stands for `as_agentscope_model()`: the default agent, trained, every call recorded."""
    calls = episode["calls"]
    assert calls, "the agent made no call through the tuner"
    for call in calls:
        assert call["trainable"] and (call["agent_name"], call["target_tag"]) == ("default", "default")
        assert call["prompt_ids"] and len(call["logprobs"]) == len(call["completion_ids"])
    assert episode["untrained_calls"] == {}


def test_simple_model_tuner_as_the_model_1x(tmp_path: Path, tiny_model_dir: Path) -> None:
    needs_agentscope(1)
    config = write_config(
        tmp_path, tiny_model_dir, "astuner_math.py:ExampleMathLearn", "math_tasks", judger=JUDGER
    )
    (episode,) = debug_episodes(config, tmp_path / "out.jsonl")
    assert_default_agent_trained(episode)
    assert episode["reward"] in (0.0, 1.0), "the judger scored metadata['final_answer']"
    tools = episode["calls"][0]["tools"]
    names = {tool["function"]["name"] for tool in tools}
    assert {"execute_python_code", "generate_response"} <= names, (
        "self.toolkit's tool and the structured output"
    )


def test_simple_seed_code_on_2x_names_the_agentscope1_extra(tmp_path: Path, tiny_model_dir: Path) -> None:
    """On AgentScope 2.x the seed's imports (inside `execute`) fail: the episode's error says what to install."""
    needs_agentscope(2)
    config = write_config(
        tmp_path, tiny_model_dir, "astuner_math.py:ExampleMathLearn", "math_tasks", judger=JUDGER
    )
    out = tmp_path / "out.jsonl"
    result = run_ajet("debug", "-c", str(config), "--store", "memory", "--out", str(out))
    assert result.returncode == 0, explain(result)
    (episode,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert episode["status"] == "failed"
    assert "ReActAgent" in episode["error"] and "pip install 'ajet[agentscope1]'" in episode["error"]
    assert "pip install -e '.[agentscope1]'" in episode["error"]
    assert "agentscope1" in result.stdout, "the debug command shows the episode's error"


def test_simple_model_tuner_as_the_model_2x(tmp_path: Path, tiny_model_dir: Path) -> None:
    needs_agentscope(2)
    config = write_config(
        tmp_path, tiny_model_dir, "astuner_math_v2.py:ExampleMathLearn", "math_tasks", judger=JUDGER
    )
    (episode,) = debug_episodes(config, tmp_path / "out.jsonl")
    assert_default_agent_trained(episode)
    assert episode["reward"] in (0.0, 1.0)
    assert {tool["function"]["name"] for tool in episode["calls"][0]["tools"]} >= {"calculate"}


def werewolves_config(tmp_path: Path, model_dir: Path, workflow: str) -> Path:
    return write_config(tmp_path, model_dir, workflow, "game_tasks")


def check_werewolves_game(episode: dict, remote_requests: int) -> None:
    calls = episode["calls"]
    assert len(calls) >= 3 and {c["target_tag"] for c in calls} == {"werewolf"}, "only the werewolves trained"
    assert {c["agent_name"] for c in calls} == {"werewolf"}, "get_model(role) names the agent by its role"
    untrained = episode["untrained_calls"]
    assert "werewolf" not in untrained and {"villager", "seer"} <= untrained.keys()
    assert not any(tag.endswith(" (failed)") for tag in untrained), untrained
    # every call of the native default models was counted, none recorded
    assert sum(untrained.values()) == remote_requests
    assert episode["reward"] in (0.0, 1.0)


@pytest.mark.parametrize(
    ("major", "workflow"), [(1, "astuner_werewolves.py"), (2, "astuner_werewolves_v2.py")]
)
def test_advanced_register_and_get_model(
    major: int, workflow: str, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_agentscope(major)
    config = werewolves_config(tmp_path, tiny_model_dir, f"{workflow}:ExampleMathLearn")
    with openai_server() as remote:
        # the seed's OpenAIChatModel(model_name="qwen-max", stream=False) takes its endpoint from the environment
        monkeypatch.setenv("OPENAI_BASE_URL", remote.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "no_api_key")
        (episode,) = debug_episodes(config, tmp_path / "out.jsonl")
        check_werewolves_game(episode, len(remote.requests))
        assert {r["model"] for r in remote.requests} <= {"qwen-max", "qwen-plus"}
        assert "qwen-max" in {r["model"] for r in remote.requests}, "the good guys' default model served them"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("major", "workflow"), [(1, "astuner_werewolves.py"), (2, "astuner_werewolves_v2.py")]
)
def test_advanced_register_and_get_model_trains_one_step(
    major: int, workflow: str, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_agentscope(major)
    config = werewolves_config(tmp_path, tiny_model_dir, f"{workflow}:ExampleMathLearn")
    with openai_server() as remote:
        monkeypatch.setenv("OPENAI_BASE_URL", remote.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "no_api_key")
        step = train_one_step(config, tmp_path / "run")
    assert step["rollout/episodes"] == 2.0 and remote.requests
