"""examples/math_agentscope end to end through the `ajet` CLI with SmolLM2-135M: the AgentScope math agent (a
calculator tool, a structured answer) under `ajet debug`, then 2 training steps under `ajet train`.

The config follows the installed AgentScope: `config.yaml` (`agentscope.agent.Agent`) under 2.x,
`config_v1.yaml` (`ReActAgent`) under 1.x, so the same tests run in both CI environments (`.ci/agentscope1.sh`
is the 1.x one); the calculator and the task generator are tested on their own, without AgentScope.
SmolLM2 writes no tool calls (measured: see the example's README); the tests check that the
agent's loop runs and every call is recorded, not that the answers are right."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ajet.core.tasks import import_object
from tests.examples.cli import ROOT, explain, run_ajet, train_two_steps

EXAMPLE = ROOT / "examples" / "math_agentscope"
# Short episodes: one reasoning-acting round, short answers.
SHORT = ("--set", "workflow.args.max_iters=1", "--set", "rollout.sampling.max_tokens=16")


def example(name: str) -> Any:
    """A name from the example's shared module, loaded as the configs load it (a file beside the config)."""
    return import_object(f"math_word_problems.py:{name}", EXAMPLE)


def config() -> Path:
    """The config for the installed AgentScope major: the tests below run unchanged in both environments."""
    agentscope = pytest.importorskip("agentscope")
    return EXAMPLE / (
        "config.yaml" if int(str(agentscope.__version__).split(".")[0]) >= 2 else "config_v1.yaml"
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("2 + 3", "5"), ("12 * (3 + 4)", "84"), ("7 / 2", "3.5"), ("-4 - -6", "2"), (" 9 - 9 ", "0")],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert example("calculator_text")(expression) == expected


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "2 ** 99999", "x + 1", "(1).real", "1 / 0", "2 +", "1" * 201],
)
def test_calculator_refuses_anything_else(expression: str) -> None:
    """Names, calls, attributes, powers, division by zero and syntax errors come back as text, never raise."""
    assert example("calculator_text")(expression).startswith("error: ")


def test_word_problems_are_seeded_labelled_and_split() -> None:
    word_problems, evaluate = example("word_problems"), example("evaluate")
    train = list(word_problems("train", count=20))
    assert train == list(word_problems("train", count=20))  # seeded: the same tasks every run
    assert [t.main_query for t in word_problems("val", count=5)] != [t.main_query for t in train[:5]]
    assert len({t.main_query for t in train}) > 10  # varied: templates, names and numbers all change
    for task in train:
        assert task.label == evaluate(task.metadata["expression"]) and task.label >= 0
    with pytest.raises(ValueError, match="split"):
        next(word_problems("test"))


@pytest.mark.slow
def test_debug_runs_the_agent_and_records_every_call(tmp_path: Path) -> None:
    out = tmp_path / "math.jsonl"
    result = run_ajet(
        "debug", "-c", str(config()), "--tasks", "1", "--store", "memory", "--out", str(out), "--strict",
        "--set", "rollout.group_size=2", *SHORT,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    episodes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(episodes) == 2
    for episode in episodes:
        assert episode["status"] == "ok", episode["error"]
        assert episode["reward"] in (0.0, 1.0)  # numeric_match judged the answer against the label
        assert episode["metadata"].keys() == {"answer", "reply", "structured", "tool_calls"}
        calls = episode["calls"]
        # the structured answer is asked for: at least the reasoning call and one more (a grace round in 2.x,
        # the summary in 1.x) when the model does not give it
        assert len(calls) >= 2 or episode["metadata"]["structured"]
        first = calls[0]
        assert first["messages"][0]["role"] == "system" and "calculator" in str(first["messages"][0])
        assert episode["task"]["main_query"] in str(first["messages"][1]["content"])
        assert "calculator" in [t["function"]["name"] for t in first["tools"]]
        for call in calls:
            assert call["trainable"] and call["prompt_ids"] and call["completion_ids"]
            assert len(call["logprobs"]) == len(call["completion_ids"]) <= 16


@pytest.mark.slow
def test_train_two_steps(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    steps = train_two_steps(
        config(), run_dir,
        "--set", "rollout.group_size=2", "--set", "train.tasks_per_step=1", "--set", "data.val=null", *SHORT,
    )  # fmt: skip
    for step in steps:
        assert step["rollout/episodes"] == 2.0 and step["rollout/reward_mean"] in (0.0, 0.5, 1.0)
        assert step["samples/trained"] > 0 and math.isfinite(step["train/grad_norm"])
