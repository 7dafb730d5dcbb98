"""The `langchain` adapter end to end: LangChain's ChatOpenAI from the tuner, driven by `create_agent` and a
LangGraph `StateGraph` inside workflows run by the rollout executor, through the real gateway and the tiny model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import openai
import pytest

pytest.importorskip("langchain_openai")
pytest.importorskip("langgraph")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel

import ajet.adapters.langchain as langchain_plugin
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
SYSTEM = "You are a calculator. Use the add tool."
TOOL_CALL_TEXT = 'Adding.<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Answer(BaseModel):
    value: int


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(langchain_plugin, TransformersEngine(*tiny_model_and_tokenizer)) as rt:
        yield rt


def test_adapter_is_registered_with_its_extra() -> None:
    adapter = registry_with(langchain_plugin).adapter("langchain")
    assert adapter.tuner_methods() == ("as_langchain_model",)
    assert adapter.install_hint() == "pip install 'ajet[langchain]'" and adapter.missing_modules() == []
    # loading the plugin imports neither its framework nor the trainer
    code = "import sys, ajet.adapters.langchain; print([m for m in MODULES if m in sys.modules])"
    code = code.replace("MODULES", repr(("langchain_openai", "ajet.trainer")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class CreateAgentWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_langchain_model(agent_name="solver", target_tag="math", temperature=0.7)
        assert isinstance(model, ChatOpenAI) and model.use_responses_api is False and model.max_retries == 0
        agent = create_agent(model, tools=[add], system_prompt=SYSTEM)
        out = await agent.ainvoke({"messages": [{"role": "user", "content": workflow_task.task.main_query}]})
        final = out["messages"][-1]
        assert isinstance(final, AIMessage)
        return WorkflowOutput(reward=0.0, metadata={"text": final.content, "n": len(out["messages"])})


async def test_create_agent_runs_in_a_workflow_and_every_call_is_recorded(runtime: Runtime) -> None:
    with no_sockets() as events:
        episodes = await RolloutExecutor(runtime, CreateAgentWorkflow).run(TASKS)
    assert events == []
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        calls = runtime.store.calls(episode.episode_id)
        assert len(calls) >= 1
        for call in calls:
            assert_recorded(call, "solver", "math")
            assert call.messages[0] == {"role": "system", "content": SYSTEM}
            assert call.messages[1] == {"role": "user", "content": "What is 2 + 3?"}
            assert call.tools is not None and call.tools[0]["function"]["name"] == "add"
            assert call.sampling["temperature"] == 0.7
        stored = runtime.store.get_episode(episode.episode_id)
        assert calls[-1].response["content"] == stored.metadata["text"]


class GraphWorkflow(Workflow):
    """A two-node LangGraph graph: an async node (`ainvoke`) then a sync node (`invoke`)."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_langchain_model(agent_name="thinker")

        async def think(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        def answer(state: MessagesState) -> dict[str, Any]:
            return {"messages": [model.invoke([*state["messages"], HumanMessage("Now just the number.")])]}

        graph = StateGraph(MessagesState)
        graph.add_node("think", think)
        graph.add_node("answer", answer)
        graph.add_edge(START, "think")
        graph.add_edge("think", "answer")
        graph.add_edge("answer", END)
        out = await graph.compile().ainvoke({"messages": [HumanMessage(workflow_task.task.main_query)]})
        return WorkflowOutput(reward=1.0, metadata={"texts": [m.content for m in out["messages"]]})


async def test_langgraph_graph_with_async_and_sync_nodes(runtime: Runtime) -> None:
    with no_sockets() as events:
        episodes = await RolloutExecutor(runtime, GraphWorkflow).run(TASKS)
    assert events == []  # the sync path is in-process too
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        first, second = runtime.store.calls(episode.episode_id)
        assert_recorded(first, "thinker", "thinker")
        assert_recorded(second, "thinker", "thinker")
        assert first.tools is None
        texts = runtime.store.get_episode(episode.episode_id).metadata["texts"]
        assert second.messages == [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": first.response["content"]},
            {"role": "user", "content": "Now just the number."},
        ]
        assert texts[1:] == [first.response["content"], second.response["content"]]


class ToolRoundTripWorkflow(Workflow):
    backend: ClassVar[Any] = None

    """A tool call the gateway parsed surfaces as `AIMessage.tool_calls`, and its result goes back in.

    The random tiny model does not write tool calls, so the tool-call completion is given to the gateway's own
    backend (`result_from`: the Hermes parser; the test sets `backend`) and the gateway's response body
    to LangChain's own parser."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_langchain_model()
        question = HumanMessage(workflow_task.task.main_query)
        await model.bind_tools([add]).ainvoke([question])  # a real call with tools (tiny model: no call)

        backend = type(self).backend
        assert isinstance(backend, EngineChatBackend)
        ids = backend.engine.tokenizer(TOOL_CALL_TEXT, add_special_tokens=False)["input_ids"]
        completion = Completion(
            ids=ids, logprobs=[-0.5] * len(ids), text=TOOL_CALL_TEXT, finish_reason="stop"
        )
        request = ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": question.content}], "tools": [_openai_tool()]}
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
        generation = model._create_chat_result(body).generations[0]
        assert generation.generation_info and generation.generation_info["finish_reason"] == "tool_calls"
        tool_message = generation.message
        assert isinstance(tool_message, AIMessage)
        (call,) = tool_message.tool_calls
        assert call["name"] == "add" and call["args"] == {"a": 2, "b": 3} and call["id"]
        assert tool_message.content == "Adding."

        # The agent goes on from that history: the tool runs, and the next request carries both turns.
        agent = create_agent(model, tools=[add], system_prompt=SYSTEM)
        result_message = add.invoke(call)
        assert isinstance(result_message, ToolMessage) and result_message.content == "5"
        await agent.ainvoke({"messages": [question, tool_message, result_message]})
        return WorkflowOutput(reward=1.0, metadata={"call_id": call["id"]})


def _openai_tool() -> dict[str, Any]:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(add)


async def test_tool_calls_surface_and_results_go_back(runtime: Runtime) -> None:
    ToolRoundTripWorkflow.backend = runtime.backend
    episodes = await RolloutExecutor(runtime, ToolRoundTripWorkflow).run(TASKS)
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        first, follow_up, *_ = runtime.store.calls(episode.episode_id)
        assert first.tools == [_openai_tool()]
        call_id = runtime.store.get_episode(episode.episode_id).metadata["call_id"]
        assert follow_up.messages[2] == {
            "role": "assistant",
            "content": "Adding.",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        }
        assert follow_up.messages[3] == {"role": "tool", "content": "5", "tool_call_id": call_id}
        assert_recorded(follow_up, "default", "default")


class StructuredWorkflow(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_langchain_model()
        bodies: list[dict[str, Any]] = []

        async def remember(request: httpx.Request) -> None:
            bodies.append(json.loads(request.content))

        model.http_async_client.event_hooks["request"].append(remember)  # the adapter's in-process client
        for method in ("json_schema", "function_calling"):
            runnable = model.with_structured_output(Answer, method=method, include_raw=True)
            try:
                out = await runnable.ainvoke(workflow_task.task.main_query)
            except openai.LengthFinishReasonError:  # json_schema: the SDK's parse() refuses a cut-off answer
                assert method == "json_schema"
                continue
            # the random model writes no valid answer: the parse error is reported, the raw message kept
            assert isinstance(out["raw"], AIMessage)
            assert out["parsed"] is None or isinstance(out["parsed"], Answer)
        return WorkflowOutput(reward=1.0, metadata={"bodies": bodies})


async def test_with_structured_output_sends_a_schema(runtime: Runtime) -> None:
    executor = RolloutExecutor(runtime, StructuredWorkflow)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS)
    assert episode.status == EpisodeStatus.OK, episode.error
    as_schema, as_tool = runtime.store.get_episode(episode.episode_id).metadata["bodies"]
    assert as_schema["response_format"]["type"] == "json_schema"
    assert as_schema["response_format"]["json_schema"]["name"] == "Answer"
    assert as_tool["tools"][0]["function"]["name"] == "Answer"
    assert as_tool["tool_choice"] == {"type": "function", "function": {"name": "Answer"}}
    recorded = runtime.store.calls(episode.episode_id)
    assert [c.tools for c in recorded] == [None, as_tool["tools"]]
    for call in recorded:
        assert_recorded(call, "default", "default")


async def test_sync_and_streaming_calls_inside_a_running_loop(runtime: Runtime) -> None:
    """`invoke` and `stream` from a coroutine work (they block the loop while they wait; the gateway does not
    need it), in-process like `ainvoke` and `astream`."""
    from ajet.core.types import Episode

    episode = Episode(task=TASKS[0], group_id="g")
    runtime.store.add_episode(episode)
    tuner = local_tuner(runtime, episode.episode_id)
    model = tuner.as_langchain_model(max_tokens=4)
    with no_sockets() as events:
        message = model.invoke("Hello")
        streamed = "".join(str(chunk.content) for chunk in model.stream("Hello"))
        astreamed = "".join([str(chunk.content) async for chunk in model.astream("Hello")])
    assert events == []
    calls = runtime.store.calls(episode.episode_id)
    assert [c.response["content"] for c in calls] == [message.content, streamed, astreamed]
    assert all(len(c.completion_ids or []) <= 4 for c in calls)
    assert message.response_metadata["model_name"] == "ajet-policy"
