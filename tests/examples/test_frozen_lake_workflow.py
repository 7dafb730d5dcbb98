"""The FrozenLake workflow's tool loop against the weak-model mistakes it must survive.

The model's replies are scripted (the tiny random model never writes a tool call) and teacher-forced
through it by the shared `ScriptedEngine` (`tests/adapters/scripted_engine.py`: real token ids and
log-probs), but everything after the engine is real: the gateway renders the prompt, the Hermes parser turns
the text into OpenAI tool calls, the OpenAI SDK client and the workflow run as in `ajet debug`, and every call
is recorded.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ajet import LabeledTask
from ajet.core.tasks import import_object
from ajet.core.types import EpisodeStatus
from tests.adapters.scripted_engine import run_scripted, tool_call

EXAMPLE = Path(__file__).parents[2] / "examples" / "frozen_lake"
MAP = ["SFH", "FFF", "HFG"]


@pytest.fixture(scope="module")
def workflow_module() -> ModuleType:
    module = inspect.getmodule(import_object(f"{EXAMPLE / 'workflow.py'}:FrozenLakeWorkflow"))
    assert module is not None
    return module


@pytest.fixture
def task(workflow_module: ModuleType) -> LabeledTask:
    lake = workflow_module.FrozenLake(MAP)
    return LabeledTask(task_id="tiny", main_query=lake.describe(), metadata={"map": MAP})


async def test_mistakes_are_answered_and_the_episode_goes_on_to_the_goal(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType, task: LabeledTask
) -> None:
    replies = [
        tool_call("move", {"direction": "north"}),
        tool_call("jump", {"direction": "down"}) + tool_call("move", {"way": "down"}),
        tool_call("move", {"direction": "down"}) + tool_call("move", {"direction": "right"}),
        tool_call("move", {"direction": "Right"}) + tool_call("move", {"direction": "down"}),
    ]
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, replies, lambda: workflow_module.FrozenLakeWorkflow(max_turns=5), task
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.reward == 1.0 and episode.is_success
    assert episode.metadata == {"outcome": "goal", "moves": 4, "turns": 4}
    assert len(calls) == 4
    for call in calls:
        assert call.tools is not None and call.tools[0]["function"]["name"] == "move"
        assert call.logprobs is not None and len(call.logprobs) == len(call.completion_ids or [])
    results = [m["content"] for m in calls[-1].messages if m["role"] == "tool"]
    assert results[0].startswith("Unknown direction 'north'; use left, right, up or down.")
    assert results[1].startswith("Unknown tool 'jump'; the only tool is move.")
    assert results[2].startswith('move needs {"direction": "left" | "right" | "up" | "down"}, got \'{"way"')
    assert results[3].startswith("You moved down.") and results[4].startswith("You moved right.")
    assert len(results) == 5  # the last turn's results (right, then down onto G) end the episode unsent


async def test_a_reply_without_a_tool_call_ends_the_episode(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType, task: LabeledTask
) -> None:
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, ["I would go right.", "unused"], workflow_module.FrozenLakeWorkflow, task
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.reward == 0.0 and episode.metadata == {"outcome": "stopped", "moves": 0, "turns": 1}
    assert len(calls) == 1


async def test_a_hole_ends_the_episode_and_later_calls_are_refused(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType, task: LabeledTask
) -> None:
    reply = tool_call("move", {"direction": "right"}) * 2 + tool_call("move", {"direction": "down"})
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, [reply], workflow_module.FrozenLakeWorkflow, task
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.reward == 0.0 and episode.metadata == {"outcome": "hole", "moves": 2, "turns": 1}
    assert len(calls) == 1


async def test_out_of_turns(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType, task: LabeledTask
) -> None:
    replies = [tool_call("move", {"direction": "up"})] * 3
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, replies, lambda: workflow_module.FrozenLakeWorkflow(max_turns=2), task
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata == {"outcome": "stopped", "moves": 2, "turns": 2} and len(calls) == 2


@pytest.mark.parametrize(
    ("name", "arguments", "start"),
    [
        ("move", "not json", "The arguments are not JSON: 'not json'."),
        ("move", "[1]", 'move needs {"direction"'),
        ("move", '{"direction": 3}', 'move needs {"direction"'),
        ("move", "", 'move needs {"direction"'),
        ("move", '{"direction": "north"}', "Unknown direction 'north'"),
        ("teleport", '{"direction": "down"}', "Unknown tool 'teleport'"),
    ],
)
def test_tool_calls_that_are_not_moves_change_nothing(
    workflow_module: ModuleType, name: str, arguments: str, start: str
) -> None:
    lake = workflow_module.FrozenLake(MAP)
    result = workflow_module.run_tool_call(lake, name, arguments)
    assert result.observation.startswith(start) and not result.done and result.reward == 0.0
    assert lake.position == (0, 0) and lake.moves == 0


def test_committed_demonstrations_are_what_the_script_writes_and_reach_the_goal(
    tmp_path: Path, workflow_module: ModuleType
) -> None:
    out = tmp_path / "demos.jsonl"
    script = EXAMPLE / "make_demonstrations.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    committed = (EXAMPLE / "data" / "demonstrations.jsonl").read_text()
    assert out.read_text() == committed, "run examples/frozen_lake/make_demonstrations.py again"
    for line in committed.splitlines():
        demo = json.loads(line)
        assert demo["tools"] == [workflow_module.MOVE_TOOL]
        assert demo["messages"][0] == {"role": "system", "content": workflow_module.SYSTEM_PROMPT}
        assert demo["messages"][-1]["role"] == "tool"
        assert demo["messages"][-1]["content"].startswith("You reached the goal!")
