"""The adapter contract: one scripted exchange, run by every installed adapter's own ReAct agent, is recorded the
same way by each.

The exchange: the model calls `add(2, 3)`, the framework runs the tool and sends its result back, the model
answers. The tiny random model would never write that tool call, so a `ScriptedEngine` teacher-forces the two
completions through it (real tokenizer, real log-probs). Each framework drives its own agent loop through its
adapter's `run_react` (`ajet.workflows.react:ReActWorkflow`), and every run must give: two calls, the same tool
definitions, the tool call in the history and its result after it, a second prompt that extends the first
prompt + completion token for token (so training merges them into one sample), the agent's identity on every
call, token ids and log-probs of equal length, and the final answer in the workflow's output. No socket is
opened. An adapter without `run_react` or whose framework is not installed is skipped, not failed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ajet import LabeledTask
from ajet.core.config import parse_config
from ajet.core.loading import load_workflow_factory
from ajet.core.plugins import load_registry
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime, build_runtime
from ajet.core.store.memory import MemoryStore
from ajet.core.types import Episode, EpisodeStatus, LlmCall
from tests.adapters.netcheck import no_sockets
from tests.adapters.scripted_engine import ScriptedEngine, tool_call

TOOL_CALL_TEXT = tool_call("add", {"a": 2, "b": 3})
FINAL_TEXT = "The answer is 5."
SYSTEM = "You are a calculator. Use the tools."
TASK = LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)
# the switch_framework example's tools: plain functions with Google-style docstrings
EXAMPLE_DIR = Path(__file__).parents[2] / "examples" / "switch_framework"

# What every framework must tell the model about the tools (framework-specific extras such as `strict` and
# `title` aside): name, description, typed and described parameters, required ones.
EXPECTED_TOOLS = [
    {
        "name": name,
        "description": f"{verb} two integers.",
        "parameters": {"a": ("integer", "the first integer"), "b": ("integer", "the second integer")},
        "required": ["a", "b"],
    }
    for name, verb in (("add", "Add"), ("multiply", "Multiply"))
]

REGISTRY = load_registry()


def _adapter_params() -> list[Any]:
    params = []
    for name in sorted(REGISTRY.adapters):
        adapter = REGISTRY.adapter(name)
        reason = None
        if adapter.run_react is None:
            reason = f"the {name!r} adapter has no run_react"
        elif adapter.missing_modules():
            reason = f"{name} is not installed ({adapter.install_hint()})"
        params.append(
            pytest.param(name, id=name, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))
        )
    return params


@pytest.fixture(params=_adapter_params())
def framework(request: pytest.FixtureRequest) -> str:
    return request.param


async def _run(
    framework: str, tiny: tuple[Any, Any], script: list[str], max_turns: int
) -> tuple[Runtime, ScriptedEngine, Episode]:
    config = parse_config(
        {
            "workflow": {
                "path": "ajet.workflows.react:ReActWorkflow",
                "args": {
                    "system_prompt": SYSTEM,
                    "tools": ["tools.py:add", "tools.py:multiply"],
                    "max_turns": max_turns,
                    "agent_name": "calc",
                },
            },
            "framework": framework,
            "judger": {"path": "numeric_match", "args": {"field": "answer"}},
            "gateway": {"http": False},
            "rollout": {"group_size": 1, "episode_timeout_s": 60, "sampling": {"max_tokens": 64}},
        },
        base_dir=EXAMPLE_DIR,
    )
    engine = ScriptedEngine(*tiny, script)
    runtime = await build_runtime(config, REGISTRY, MemoryStore(), engine)
    with no_sockets() as events:
        (episode,) = await RolloutExecutor(runtime, load_workflow_factory(config)).run([TASK])
    assert events == [], f"{framework} reached the network: {events}"
    return runtime, engine, episode


@pytest.fixture
async def scripted_run(framework: str, tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Any]:
    runtime, engine, episode = await _run(
        framework, tiny_model_and_tokenizer, [TOOL_CALL_TEXT, FINAL_TEXT], 4
    )
    try:
        yield runtime, engine, episode
    finally:
        await runtime.close()


def _text(content: Any) -> str:
    """A message's text, whether the framework sent a string or a list of content parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _tool_definitions(call: LlmCall) -> list[dict[str, Any]]:
    definitions = []
    for tool in call.tools or []:
        function = tool["function"]
        schema = function["parameters"]
        definitions.append(
            {
                "name": function["name"],
                "description": function.get("description"),
                "parameters": {
                    name: (prop.get("type"), prop.get("description"))
                    for name, prop in schema["properties"].items()
                },
                "required": sorted(schema.get("required", [])),
            }
        )
    return definitions


async def test_the_scripted_exchange_is_recorded_the_same_way(scripted_run: Any, framework: str) -> None:
    runtime, engine, episode = scripted_run
    assert episode.status == EpisodeStatus.OK, episode.error
    calls = runtime.store.calls(episode.episode_id)
    assert len(calls) == 2 and engine.remaining == 0, [c.response for c in calls]
    first, second = calls

    for call in calls:
        assert (call.agent_name, call.target_tag, call.trainable) == ("calc", "calc", True)
        assert _tool_definitions(call) == EXPECTED_TOOLS
        assert call.messages[0]["role"] == "system" and _text(call.messages[0]["content"]) == SYSTEM
        assert call.messages[1]["role"] == "user" and _text(call.messages[1]["content"]) == TASK.main_query
        assert call.prompt_ids and call.completion_ids and call.logprobs
        assert len(call.completion_ids) == len(call.logprobs)
        assert all(lp <= 0.0 for lp in call.logprobs)

    # the model's tool call, parsed by the gateway, went back in the history with the tool's result after it
    (tool_call,) = first.response["tool_calls"]
    assert tool_call["function"]["name"] == "add"
    assert json.loads(tool_call["function"]["arguments"]) == {"a": 2, "b": 3}
    assert first.completion_text == TOOL_CALL_TEXT and first.finish_reason == "tool_calls"
    assistant, tool_result = second.messages[2:]
    assert assistant["role"] == "assistant" and not _text(assistant.get("content"))
    (echoed,) = assistant["tool_calls"]
    assert echoed["id"] == tool_call["id"] and echoed["function"]["name"] == "add"
    assert json.loads(echoed["function"]["arguments"]) == {"a": 2, "b": 3}
    assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == tool_call["id"]
    assert _text(tool_result["content"]) == "5"

    # append-only: the second prompt is the first prompt + completion, then the tool result and the next turn
    assert second.prompt_ids[: len(first.prompt_ids) + len(first.completion_ids)] == (
        first.prompt_ids + first.completion_ids
    )
    assert engine.prompts == [first.prompt_ids, second.prompt_ids]

    # the final answer reached the workflow, and the judger scored it
    assert second.response == {"role": "assistant", "content": FINAL_TEXT}
    assert episode.metadata == {"answer": FINAL_TEXT, "framework": framework}
    assert episode.reward == 1.0 and episode.is_success is True


async def test_max_turns_bounds_the_model_calls(framework: str, tiny_model_and_tokenizer: Any) -> None:
    """A model that never stops calling tools gets exactly `max_turns` calls, and the episode still ends ok."""
    runtime, engine, episode = await _run(framework, tiny_model_and_tokenizer, [TOOL_CALL_TEXT] * 6, 2)
    try:
        assert episode.status == EpisodeStatus.OK, episode.error
        assert len(runtime.store.calls(episode.episode_id)) == 2 and engine.remaining == 4
    finally:
        await runtime.close()
