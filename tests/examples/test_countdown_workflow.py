"""The Countdown workflow (LangChain `create_agent`) against the weak-model mistakes it must survive.

The model's replies are scripted (the tiny random model never writes a tool call) and teacher-forced
through it by the shared `ScriptedEngine` (`tests/adapters/scripted_engine.py`: real token ids and
log-probs); the gateway, the Hermes tool-call parser, LangChain's ChatOpenAI, the agent graph and its ToolNode
are real, and every call is recorded.
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

pytest.importorskip("langchain_openai")

EXAMPLE = Path(__file__).parents[2] / "examples" / "countdown"
TASK = LabeledTask(
    task_id="t",
    main_query="Numbers: 3, 5, 7. Target: 22.",
    label=22,
    metadata={"numbers": [3, 5, 7], "target": 22},
)


@pytest.fixture(scope="module")
def workflow_module() -> ModuleType:
    module = inspect.getmodule(import_object(f"{EXAMPLE / 'workflow.py'}:CountdownWorkflow"))
    assert module is not None
    return module


async def test_bad_tool_calls_are_answered_and_a_correct_answer_scores_one(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType
) -> None:
    replies = [
        tool_call("evaluate", {"expression": "__import__('os').getcwd()"}),
        tool_call("evaluate", {"expr": "3 + 5"}) + tool_call("calculator", {"expression": "1"}),
        tool_call("evaluate", {"expression": "3 * 5 + 7"}),
        "Found it: <answer>3 * 5 + 7</answer>",
    ]
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, replies, lambda: workflow_module.CountdownWorkflow(max_turns=4), TASK
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.reward == 1.0 and episode.is_success
    assert episode.metadata["expression"] == "3 * 5 + 7" and episode.metadata["tool_calls"] == 2
    assert episode.metadata["tried"] == ["__import__('os').getcwd()", "3 * 5 + 7"]
    assert len(calls) == 4
    for call in calls:
        assert call.tools is not None and call.tools[0]["function"]["name"] == "evaluate"
        assert call.logprobs is not None and len(call.logprobs) == len(call.completion_ids or [])
    results = [m["content"] for m in calls[-1].messages if m["role"] == "tool"]
    assert results[0] == "error: Call is not allowed; use only numbers, ( ) and + - * /"
    assert "expression" in results[1] and "Field required" in results[1]  # LangChain's argument check
    assert "calculator is not a valid tool" in results[2]
    assert results[3] == "3 * 5 + 7 = 22 (uses 3, 5, 7). This reaches the target 22."


@pytest.mark.parametrize(
    ("reply", "reward"),
    [
        ("3 + 5 = 8", 0.1),  # well-formed, only given numbers, wrong value
        ("<answer>7 * 3 + 1</answer>", 0.0),  # 1 is not a given number
        ("I do not know.", 0.0),
        ("The answer is (7 + 3) * 5 - 28.", 0.0),
        ("22 = 7 + 5 * 3", 1.0),  # the last run of arithmetic counts; `=` ends a run
    ],
)
async def test_a_plain_reply_is_scored_without_tools(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType, reply: str, reward: float
) -> None:
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, [reply], workflow_module.CountdownWorkflow, TASK
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.reward == reward and len(calls) == 1 and episode.metadata["tool_calls"] == 0


async def test_an_agent_that_never_stops_calling_tools_is_cut_off_cleanly(
    tiny_model_and_tokenizer: tuple[Any, Any], workflow_module: ModuleType
) -> None:
    replies = ["<answer>3 + 5</answer>" + tool_call("evaluate", {"expression": "3 + 5"})] * 5
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, replies, lambda: workflow_module.CountdownWorkflow(max_turns=2), TASK
    )
    assert episode.status == EpisodeStatus.OK, episode.error
    assert len(calls) == 2 and episode.metadata["tool_calls"] <= 2
    assert episode.metadata["reply"] == "<answer>3 + 5</answer>" and episode.reward == 0.1


def test_committed_demonstrations_are_what_the_script_writes_and_solve_their_puzzles(
    tmp_path: Path, workflow_module: ModuleType
) -> None:
    out = tmp_path / "demos.jsonl"
    script = EXAMPLE / "make_demonstrations.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    committed = (EXAMPLE / "data" / "demonstrations.jsonl").read_text()
    assert out.read_text() == committed, "run examples/countdown/make_demonstrations.py again"
    game = inspect.getmodule(import_object(f"{EXAMPLE / 'countdown_game.py'}:score"))
    assert game is not None
    lines = committed.splitlines()
    for line, task in zip(lines, game.countdown_tasks("train", train_size=len(lines)), strict=True):
        system, user, _, result, answer = json.loads(line)["messages"]
        assert system == {"role": "system", "content": workflow_module.SYSTEM_PROMPT}
        numbers, target = task.metadata["numbers"], task.metadata["target"]
        assert user == {"role": "user", "content": task.main_query}
        assert result["content"].endswith(f"This reaches the target {target}.")
        assert game.score(game.extract_expression(answer["content"]), numbers, target) == 1.0
