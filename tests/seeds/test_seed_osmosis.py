"""Seed 003, Osmosis' "Building AgentWorkflows": each snippet's code, with only the Osmosis names translated to
ajet (tests/seeds/workflows/osmosis_*.py say what changed), runs through `ajet debug` as a user runs it.

Every config names the workflow file alone (`workflow: osmosis_strands.py`, no `:Class`): the file's one
concrete Workflow is found, as Osmosis' auto-discovery does. The grader reads the conversation (a judger that
declares `messages`). The model is the tiny random model with the real tokenizer, saved once, with short
completions, so each run takes seconds; its answers are nonsense, so what is checked is that the code ran, the
agent's calls were recorded for training, and the grader saw them. The tool loop's tool call is scripted in
process (the random model never writes one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajet import LabeledTask
from ajet.core.config import parse_config
from ajet.core.loading import load_workflow_factory
from tests.adapters.scripted_engine import run_scripted, tool_call
from tests.examples.cli import debug_episodes

pytest.importorskip("strands")

WORKFLOWS = Path(__file__).parent / "workflows"
TASKS = [
    {"task_id": "capital", "main_query": "What is the capital of France?", "label": "Paris"},
    {"task_id": "sum", "main_query": "What is 2 + 3?", "label": "5"},
]


def write_config(tmp_path: Path, tiny_dir: Path, workflow: str, args: dict[str, Any] | None = None) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(row) + "\n" for row in TASKS))
    config = {
        "workflow": {"path": str(WORKFLOWS / workflow), "args": args or {}},
        "model": {"path": str(tiny_dir)},
        "rollout": {"group_size": 2, "sampling": {"max_tokens": 12}},
        "judger": {"path": str(WORKFLOWS / "osmosis_grader.py") + ":grade"},
        "data": {"train": {"kind": "file", "path": str(tasks)}},
        "gateway": {"http": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def check_graded(episodes: list[dict[str, Any]], agent_name: str, system: bool) -> None:
    """Every episode ran, its calls were recorded for training, and the grader read the conversation."""
    assert len(episodes) == len(TASKS) * 2
    for episode in episodes:
        assert episode["reward"] in (0.0, 1.0)
        assert episode["calls"], "the agent's calls were not recorded"
        first, last = episode["calls"][0], episode["calls"][-1]
        assert all(call["agent_name"] == agent_name and call["trainable"] for call in episode["calls"])
        assert first["completion_ids"] and len(first["completion_ids"]) == len(first["logprobs"])
        query = next(t["main_query"] for t in TASKS if t["task_id"] == episode["task"]["task_id"])
        assert query in json.dumps(first["messages"])
        roles = [m["role"] for m in last["messages"]] + ["assistant"]
        assert episode["metadata"]["judge_explanation"] == f"read {len(roles)} messages: {','.join(roles)}"
        assert (roles[0] == "system") == system


def test_strands_pattern(tmp_path: Path, tiny_dir: Path) -> None:
    """`Agent(messages=ctx.prompt, callback_handler=None)` then `await agent.invoke_async()`."""
    episodes = debug_episodes(write_config(tmp_path, tiny_dir, "osmosis_strands.py"), tmp_path / "out.jsonl")
    check_graded(episodes, agent_name="default", system=False)
    for episode in episodes:  # one call each: a completion cut at max_tokens ends the turn instead of raising
        assert [call["sampling"]["temperature"] for call in episode["calls"]] == [1.0]


def test_openai_agents_pattern(tmp_path: Path, tiny_dir: Path) -> None:
    """`Agent(model_settings=ModelSettings(temperature=1.0, max_tokens=...))`, a session, `Runner.run`."""
    pytest.importorskip("agents")
    config = write_config(tmp_path, tiny_dir, "osmosis_openai_agents.py")
    episodes = debug_episodes(config, tmp_path / "out.jsonl")
    check_graded(episodes, agent_name="default", system=True)
    for episode in episodes:
        (call,) = episode["calls"]
        assert call["messages"][0] == {"role": "system", "content": "Answer the user's request clearly."}
        assert call["sampling"]["temperature"] == 1.0 and call["sampling"]["max_tokens"] == 16


def test_custom_config_pattern(tmp_path: Path, tiny_dir: Path) -> None:
    """The config object's values reach the agent; YAML's `workflow.args` sets them."""
    args = {"config": {"temperature": 0.7}}
    config = write_config(tmp_path, tiny_dir, "osmosis_custom_config.py", args)
    episodes = debug_episodes(config, tmp_path / "out.jsonl")
    check_graded(episodes, agent_name="default", system=False)
    for episode in episodes:
        assert episode["metadata"]["max_iterations"] == 8 and episode["metadata"]["temperature"] == 0.7
        assert all(call["sampling"]["temperature"] == 0.7 for call in episode["calls"])


def test_tool_workflow_through_debug(tmp_path: Path, tiny_dir: Path) -> None:
    """`@tool(name="search")` and the `max_iterations` loop; the random model answers without the tool."""
    episodes = debug_episodes(write_config(tmp_path, tiny_dir, "osmosis_tools.py"), tmp_path / "out.jsonl")
    check_graded(episodes, agent_name="default", system=False)
    for episode in episodes:
        assert episode["calls"][0]["tools"][0]["function"]["name"] == "search"
        assert 1 <= episode["metadata"]["iterations"] <= 8


async def test_tool_workflow_calls_search(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    """With the model's replies scripted: the agent calls `search`, Strands runs it, the agent answers."""
    config = parse_config({"workflow": str(WORKFLOWS / "osmosis_tools.py")})
    replies = [tool_call("search", {"query": "capital of France"}), "Paris."]
    task = LabeledTask(**TASKS[0])
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, replies, load_workflow_factory(config), task
    )
    assert episode.status == "ok", episode.error
    assert (
        episode.metadata["iterations"] == 1
    )  # Strands ran the tool inside invoke_async; the answer ended it
    assert calls[0].response["tool_calls"][0]["function"]["name"] == "search"
    assert calls[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": calls[0].response["tool_calls"][0]["id"],
        "content": "results for capital of France",
    }
    assert calls[1].response["content"] == "Paris."


def test_a_workflow_file_is_found_without_a_class_name() -> None:
    """Osmosis' rule: the entrypoint holds exactly one concrete workflow; tools, configs and the module-level
    config instance in the same file do not get in the way."""
    for name, cls in [
        ("osmosis_strands.py", "SimpleStrandsWorkflow"),
        ("osmosis_openai_agents.py", "SimpleOpenAIWorkflow"),
        ("osmosis_custom_config.py", "SearchWorkflow"),
        ("osmosis_tools.py", "ToolWorkflow"),
    ]:
        factory = load_workflow_factory(parse_config({"workflow": str(WORKFLOWS / name)}))
        assert type(factory()).__name__ == cls
