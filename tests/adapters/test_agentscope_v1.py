"""AgentScope 1.x: the seed's agent code, with only the model line changed, inside a workflow run by the rollout
executor, through the real gateway and the tiny random model. Skipped unless AgentScope 1.x is installed (CI runs
it in a second environment: `.ci/agentscope1.sh`).

The seed code is `ReActAgent(name, sys_prompt, model=tuner.as_agentscope_model(), formatter=..., toolkit=...,
memory=InMemoryMemory())` and `await agent.reply(msg, structured_model=Answer)`, with both 1.x formatters:

- `OpenAIChatFormatter` writes OpenAI messages.
- `DashScopeChatFormatter` writes DashScope's: text content as a list of `{"text": ...}` parts, which the same
  formatter then joins into one string when every part is text, tool calls and tool results as OpenAI writes
  them (plus a `name` on tool results, which the gateway ignores). So for a text-only agent it produces
  OpenAI-compatible messages, and the adapter needs to do nothing about it; these tests check exactly that.
  Images or audio would come out in DashScope's shape (`{"image": url}`), which the gateway rejects with a 400,
  as it rejects any media: it serves a text-only policy.

The random tiny model writes no tool calls, so the tests that need one (the calculator call, then the
`generate_response` call that carries the structured output) use the shared `ScriptedEngine`
(`tests/adapters/scripted_engine.py`): it returns the scripted tokens with the tiny model's own log-probs of
them (one forward pass). The script picks the completion by what the prompt holds, not by call order, because
the two episodes of a group run concurrently and their calls interleave. Everything else — the agent, the
formatter, AgentScope's OpenAIChatModel, the gateway (chat template, Hermes tool-call parser, recorder) — is
real.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
from pydantic import BaseModel

import ajet.adapters.agentscope as agentscope_plugin
from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.rollout import RolloutExecutor, local_tuner
from ajet.core.runtime import Runtime
from ajet.core.types import EpisodeStatus, LlmCall
from tests.adapters.netcheck import no_sockets
from tests.adapters.runtimes import adapter_runtime
from tests.adapters.runtimes import assert_recorded as assert_recorded_as
from tests.adapters.scripted_engine import ScriptedEngine, tool_call

agentscope = pytest.importorskip("agentscope")
if agentscope_plugin.installed_major_version() != 1:
    pytest.skip(f"AgentScope {agentscope.__version__} is installed, not 1.x", allow_module_level=True)

# 1.x-only names: imported once the version is known
from agentscope.agent import ReActAgent  # noqa: E402
from agentscope.formatter import DashScopeChatFormatter, OpenAIChatFormatter  # noqa: E402
from agentscope.memory import InMemoryMemory  # noqa: E402
from agentscope.message import Msg, TextBlock  # noqa: E402
from agentscope.model import OpenAIChatModel  # noqa: E402
from agentscope.tool import Toolkit, ToolResponse  # noqa: E402

TASKS = [LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)]
SYSTEM = "You are a calculator. Use the add tool."
MAX_ITERS = 3
FORMATTERS = {"openai": OpenAIChatFormatter, "dashscope": DashScopeChatFormatter}

ADD_CALL = tool_call("add", {"a": 2, "b": 3})
FINISH_CALL = "The answer is 5." + tool_call("generate_response", {"answer": 5})


class Answer(BaseModel):
    answer: int


def add(a: int, b: int) -> ToolResponse:
    """Add two integers.

    Args:
        a (int): the first integer
        b (int): the second integer
    """
    return ToolResponse(content=[TextBlock(type="text", text=str(a + b))])


class SeedAgent(Workflow):
    """The seed's AgentScope 1.x code; only the `model=` line is ajet's."""

    formatter: str = "openai"

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        toolkit = Toolkit()
        toolkit.register_tool_function(add)
        model = tuner.as_agentscope_model(agent_name="calc", target_tag="math")
        agent = ReActAgent(
            name="calc",
            sys_prompt=SYSTEM,
            model=model,
            formatter=FORMATTERS[self.formatter](),
            toolkit=toolkit,
            memory=InMemoryMemory(),
            max_iters=MAX_ITERS,
        )
        agent.set_console_output_enabled(False)
        bodies: list[dict[str, Any]] = []

        async def remember(request: Any) -> None:
            bodies.append(json.loads(request.content))

        # the request bodies, to check what the recorder does not keep (tool_choice); the adapter's own client
        model.client._client.event_hooks["request"].append(remember)
        msg = await agent.reply(Msg("user", workflow_task.task.main_query, "user"), structured_model=Answer)
        return WorkflowOutput(
            reward=1.0 if (msg.metadata or {}).get("answer") == 5 else 0.0,
            metadata={
                "text": msg.get_text_content() or "",
                "structured": msg.metadata,
                "bodies": bodies,
                "model_type": type(model).__name__,
            },
        )


def calculator_script(prompt: str, call_index: int) -> str:
    """First call the calculator; once its call is in the history, answer and give the structured output."""
    return FINISH_CALL if '"arguments": {"a": 2, "b": 3}' in prompt else ADD_CALL


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(agentscope_plugin, TransformersEngine(*tiny_model_and_tokenizer)) as rt:
        yield rt


@pytest.fixture
async def scripted_runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    engine = ScriptedEngine(*tiny_model_and_tokenizer, calculator_script)
    async with adapter_runtime(agentscope_plugin, engine, max_tokens=64) as rt:
        yield rt


def assert_recorded(call: LlmCall) -> None:
    assert_recorded_as(call, "calc", "math")


def text_of(message: dict[str, Any]) -> str:
    """The text of an OpenAI message, checking its shape: a string (DashScope's formatter joins text parts), or
    OpenAI text parts (OpenAI's formatter keeps them)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    assert all(part.keys() == {"type", "text"} and part["type"] == "text" for part in content), content
    return "".join(part["text"] for part in content)


def tool_names(call: LlmCall) -> list[str]:
    return [t["function"]["name"] for t in call.tools or []]


@pytest.mark.parametrize("formatter", ["openai", "dashscope"])
async def test_seed_code_runs_and_every_call_is_recorded(runtime: Runtime, formatter: str) -> None:
    """The random model never calls `generate_response`, so the agent asks `MAX_ITERS` times (tools required),
    then summarizes once without tools; every one of those calls is recorded."""
    with no_sockets() as events:
        episodes = await RolloutExecutor(runtime, partial(SeedAgent, formatter=formatter)).run(TASKS)
    assert events == []
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        metadata = runtime.store.get_episode(episode.episode_id).metadata
        assert metadata["model_type"] == "OpenAIChatModel" and metadata["structured"] is None
        calls = runtime.store.calls(episode.episode_id)
        bodies = metadata["bodies"]
        assert len(calls) == len(bodies) == MAX_ITERS + 1
        for call, body in zip(calls[:MAX_ITERS], bodies, strict=False):
            assert_recorded(call)
            assert tool_names(call) == ["add", "generate_response"]
            assert body["tool_choice"] == "required" and body["stream"] is False
            assert [(m["role"], text_of(m)) for m in call.messages[:2]] == [
                ("system", SYSTEM),
                ("user", "What is 2 + 3?"),
            ]
        (add_tool, finish_tool) = calls[0].tools or []
        assert add_tool["function"]["parameters"]["properties"].keys() == {"a", "b"}
        assert "answer" in finish_tool["function"]["parameters"]["properties"]
        summary = calls[-1]
        assert_recorded(summary)
        assert summary.tools is None and "tool_choice" not in bodies[-1]
        assert "summarizing" in text_of(summary.messages[-1])
        # what the agent answered is what the gateway returned
        assert metadata["text"] == summary.response["content"]


@pytest.mark.parametrize("formatter", ["openai", "dashscope"])
async def test_tool_call_and_structured_output_round_trip(scripted_runtime: Runtime, formatter: str) -> None:
    """A calculator call the gateway parsed runs in the toolkit, its result goes back to the model as an OpenAI
    tool message, and the `generate_response` call fills `reply(...).metadata` with the structured output."""
    with no_sockets() as events:
        episodes = await RolloutExecutor(scripted_runtime, partial(SeedAgent, formatter=formatter)).run(TASKS)
    assert events == []
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        assert episode.reward == 1.0
        metadata = scripted_runtime.store.get_episode(episode.episode_id).metadata
        assert metadata["structured"] == {"answer": 5} and metadata["text"] == "The answer is 5."
        first, second = scripted_runtime.store.calls(episode.episode_id)
        for call in (first, second):
            assert_recorded(call)
            assert tool_names(call) == ["add", "generate_response"]
        assert first.completion_text == ADD_CALL and first.finish_reason == "tool_calls"
        (tool_call,) = first.response["tool_calls"]
        assert tool_call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
        # the second request carries the call and the tool's result, in OpenAI's shape with either formatter
        assistant, tool_result = second.messages[2], second.messages[3]
        assert assistant["role"] == "assistant" and not assistant.get("content")
        assert assistant["tool_calls"] == [
            {"id": tool_call["id"], "type": "function", "function": tool_call["function"]}
        ]
        assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == tool_call["id"]
        assert text_of(tool_result) == "5"
        (finish,) = second.response["tool_calls"]
        assert finish["function"]["name"] == "generate_response"
        assert second.response["content"] == "The answer is 5."


async def test_streaming_is_refused_with_a_reason(runtime: Runtime) -> None:
    """1.0.21's stream parser reads `"data" in delta.audio`, and openai's chunks carry `audio=None`: every
    streamed reply would fail with a TypeError deep in AgentScope, so the adapter says why up front."""
    tuner = local_tuner(runtime, "e-stream")
    model = tuner.as_agentscope_model()
    assert isinstance(model, OpenAIChatModel) and model.stream is False
    from openai.types.chat.chat_completion_chunk import ChoiceDelta

    if "audio" not in ChoiceDelta.model_fields:
        pytest.skip("this openai release has no delta.audio; streaming works")
    with pytest.raises(ValueError, match="stream=True"):
        tuner.as_agentscope_model(stream=True)
