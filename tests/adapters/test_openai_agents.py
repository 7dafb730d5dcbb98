"""The `openai_agents` adapter end to end: the Agents SDK's OpenAIChatCompletionsModel from the tuner, run by
`Runner.run` inside workflows driven by the rollout executor, through the real gateway and the tiny model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

pytest.importorskip("agents")

import agents
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool
from agents.models.chatcmpl_converter import Converter
from agents.tracing import get_trace_provider
from agents.tracing.traces import NoOpTrace
from openai.types.chat import ChatCompletion
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

import ajet.adapters.openai_agents as openai_agents_plugin
from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.backends import EngineChatBackend
from ajet.core.gateway.schemas import ChatCompletionRequest, completion_body
from ajet.core.rollout import RolloutExecutor, local_tuner
from ajet.core.runtime import Runtime
from ajet.core.types import Completion, EpisodeStatus, SamplingParams
from tests.adapters.netcheck import no_sockets
from tests.adapters.runtimes import adapter_runtime, assert_recorded, registry_with

TASKS = [LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)]
INSTRUCTIONS = "You are a calculator. Use the add tool."
TOOL_CALL_TEXT = 'Adding.<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(openai_agents_plugin, TransformersEngine(*tiny_model_and_tokenizer)) as rt:
        yield rt


def tracing_enabled() -> bool:
    return not isinstance(get_trace_provider().create_trace("ajet-probe"), NoOpTrace)


def test_adapter_is_registered_with_its_extra() -> None:
    adapter = registry_with(openai_agents_plugin).adapter("openai_agents")
    assert adapter.tuner_methods() == ("as_openai_agents_model",)
    assert adapter.install_hint() == "pip install 'ajet[openai-agents]'" and adapter.missing_modules() == []
    # loading the plugin imports neither its framework nor the trainer
    code = "import sys, ajet.adapters.openai_agents; print([m for m in MODULES if m in sys.modules])"
    code = code.replace("MODULES", repr(("agents", "ajet.trainer")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class RunnerWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_openai_agents_model(agent_name="calc", target_tag="math")
        assert isinstance(model, OpenAIChatCompletionsModel)
        agent = Agent(
            name="calc",
            instructions=INSTRUCTIONS,
            model=model,
            tools=[add],
            model_settings=ModelSettings(temperature=0.5),
        )
        result = await Runner.run(agent, workflow_task.task.main_query, max_turns=3)
        return WorkflowOutput(reward=0.0, metadata={"text": str(result.final_output)})


async def test_runner_runs_in_a_workflow_and_every_call_is_recorded(runtime: Runtime) -> None:
    with no_sockets() as events:
        episodes = await RolloutExecutor(runtime, RunnerWorkflow).run(TASKS)
    assert events == []  # in-process: no connect, no DNS lookup (tracing export would need both)
    assert not tracing_enabled()  # the adapter's first use turned the SDK's trace export off
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        (call,) = runtime.store.calls(episode.episode_id)
        assert_recorded(call, "calc", "math")
        assert call.messages == [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": "What is 2 + 3?"},
        ]
        assert call.tools is not None and call.tools[0]["function"]["name"] == "add"
        assert call.sampling["temperature"] == 0.5
        assert runtime.store.get_episode(episode.episode_id).metadata["text"] == call.response["content"]


class ToolRoundTripWorkflow(Workflow):
    backend: ClassVar[Any] = None

    """A tool call the gateway parsed becomes the SDK's `ResponseFunctionToolCall`, and its output goes back in.

    The random tiny model does not write tool calls, so the tool-call completion is given to the gateway's own
    backend (`result_from`: the Hermes parser; the test sets `backend`) and the gateway's response body
    to the SDK's own converter."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        backend = type(self).backend
        assert isinstance(backend, EngineChatBackend)
        ids = backend.engine.tokenizer(TOOL_CALL_TEXT, add_special_tokens=False)["input_ids"]
        completion = Completion(
            ids=ids, logprobs=[-0.5] * len(ids), text=TOOL_CALL_TEXT, finish_reason="stop"
        )
        request = ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": "q"}], "tools": [Converter.tool_to_openai(add)]}
        )
        result = backend.result_from(request, [1, 2, 3], SamplingParams(), completion)
        body = completion_body(
            completion_id="chatcmpl-x",
            model="ajet-policy",
            message=result.message,
            finish_reason=result.finish_reason,
            usage_block=result.usage,
            logprobs=None,
        )
        message = ChatCompletion.model_validate(body).choices[0].message
        text, call = Converter.message_to_output_items(message)
        assert isinstance(text, ResponseOutputMessage) and text.content[0].text == "Adding."  # type: ignore[union-attr]
        assert isinstance(call, ResponseFunctionToolCall)
        assert call.name == "add" and call.arguments == '{"a": 2, "b": 3}'

        # The agent goes on from that history: the next request carries the call and its output.
        agent = Agent(
            name="calc", instructions=INSTRUCTIONS, model=tuner.as_openai_agents_model(), tools=[add]
        )
        history: list[Any] = [
            {"role": "user", "content": workflow_task.task.main_query},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "5"},
        ]
        await Runner.run(agent, history, max_turns=3)
        return WorkflowOutput(reward=1.0, metadata={"call_id": call.call_id})


async def test_tool_calls_surface_and_outputs_go_back(runtime: Runtime) -> None:
    ToolRoundTripWorkflow.backend = runtime.backend
    episodes = await RolloutExecutor(runtime, ToolRoundTripWorkflow).run(TASKS)
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        (follow_up,) = runtime.store.calls(episode.episode_id)
        call_id = runtime.store.get_episode(episode.episode_id).metadata["call_id"]
        assistant, tool_output = follow_up.messages[2:]
        assert assistant["role"] == "assistant"
        assert assistant["tool_calls"] == [
            {"id": call_id, "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
        ]
        assert tool_output == {"role": "tool", "tool_call_id": call_id, "content": "5"}
        assert_recorded(follow_up, "default", "default")


async def test_a_users_tracing_choice_stands(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    """With OPENAI_AGENTS_DISABLE_TRACING set, the adapter leaves tracing as the user configured it."""
    from ajet.core.types import Episode

    episode = Episode(task=TASKS[0], group_id="g")
    runtime.store.add_episode(episode)
    tuner = local_tuner(runtime, episode.episode_id)
    monkeypatch.setattr(openai_agents_plugin, "_tracing_configured", False)
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "0")
    agents.set_tracing_disabled(False)
    try:
        tuner.as_openai_agents_model()
        assert tracing_enabled()
    finally:
        agents.set_tracing_disabled(True)
    monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING")
    monkeypatch.setattr(openai_agents_plugin, "_tracing_configured", False)
    agents.set_tracing_disabled(False)
    tuner.as_openai_agents_model()
    assert not tracing_enabled()
