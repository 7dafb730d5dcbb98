"""The `strands` adapter end to end: a Strands `Agent` with a tool, inside a workflow run by the rollout executor,
through the real gateway and the tiny random model. Every model call is recorded, and no socket leaves the
machine (Strands without a model would build a Bedrock model that contacts the AWS metadata service)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import ajet.adapters.strands as strands_plugin
from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.rollout import RolloutExecutor
from ajet.core.runtime import Runtime
from ajet.core.types import EpisodeStatus

pytest.importorskip("strands")

from ajet.adapters.strands import to_strands_messages
from tests.adapters.runtimes import adapter_runtime, registry_with
from tests.adapters.scripted_engine import run_scripted

TASKS = [LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)]
STOP = ["e", "a", "o", " "]


# -- an audit of outgoing connections ------------------------------------------------------------------------
# Audit hooks cannot be removed, so one hook is installed for the session and records only while a test listens.

_listeners: list[list[tuple[str, Any]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _listeners and event in ("socket.connect", "socket.getaddrinfo"):
        target = args[1] if event == "socket.connect" else args[0]
        for listener in _listeners:
            listener.append((event, target))


sys.addaudithook(_audit)


def _is_loopback(target: Any) -> bool:
    if isinstance(target, tuple):
        target = target[0]
    if isinstance(target, bytes):
        target = target.decode(errors="replace")
    if not isinstance(target, str) or target in ("", "localhost") or target.startswith("/"):
        return True  # an AF_UNIX path, or no host
    try:
        return ipaddress.ip_address(target).is_loopback
    except ValueError:
        return False  # a host name to resolve: DNS


@pytest.fixture
def connections() -> Iterator[list[tuple[str, Any]]]:
    """Every connect and name lookup made while the test runs (the in-process gateway needs none)."""
    seen: list[tuple[str, Any]] = []
    _listeners.append(seen)
    try:
        yield seen
    finally:
        _listeners.remove(seen)


def test_the_audit_sees_a_remote_connect() -> None:
    seen: list[tuple[str, Any]] = []
    _listeners.append(seen)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # UDP connect sends no packet
            udp.connect(("192.0.2.1", 9))
    finally:
        _listeners.remove(seen)
    assert [target for _, target in seen if not _is_loopback(target)] == [("192.0.2.1", 9)]


# -- the workflow --------------------------------------------------------------------------------------------


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(
        strands_plugin, TransformersEngine(*tiny_model_and_tokenizer), timeout_s=30
    ) as rt:
        yield rt


class CalculatorAgent(Workflow):
    """The user's Strands code, unchanged except that the model comes from the tuner."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        import strands

        @strands.tool
        def add(a: int, b: int) -> int:
            """Add two integers.

            Args:
                a: the first integer
                b: the second integer
            """
            return a + b

        # `stop` makes the random model end its turn early; a turn cut at max_tokens ends normally too
        model = tuner.as_strands_model(agent_name="calc", target_tag="math", temperature=1.0, stop=STOP)
        agent = strands.Agent(
            model=model, tools=[add], system_prompt="You are a calculator.", callback_handler=None
        )
        result = await agent.invoke_async(workflow_task.task.main_query)
        return WorkflowOutput(
            reward=1.0 if "5" in str(result) else 0.0,
            is_success=True,
            metadata={"stop_reason": result.stop_reason, "text": str(result)},
        )


async def test_strands_agent_calls_are_recorded_without_network(
    connections: list[tuple[str, Any]], runtime: Runtime
) -> None:
    episodes = await RolloutExecutor(runtime, CalculatorAgent).run(TASKS)
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        calls = runtime.store.calls(episode.episode_id)
        assert calls, "the agent's model calls did not reach the recorder"
        first = calls[0]
        assert first.agent_name == "calc" and first.target_tag == "math" and first.trainable
        assert [t["function"]["name"] for t in first.tools or []] == ["add"]
        assert first.tools[0]["function"]["parameters"]["properties"].keys() == {"a", "b"}
        assert first.messages[0] == {"role": "system", "content": "You are a calculator."}
        assert "2 + 3" in str(first.messages[-1]["content"])
        assert first.sampling["temperature"] == 1.0 and first.sampling["stop"] == STOP
        for call in calls:
            assert call.prompt_ids and call.completion_ids
            assert len(call.completion_ids) == len(call.logprobs or [])
        assert episode.metadata["stop_reason"] in ("end_turn", "tool_use")
        if episode.metadata["stop_reason"] == "end_turn":
            assert episode.metadata["text"].strip() == (calls[-1].response["content"] or "").strip()
    assert [item for item in connections if not _is_loopback(item[1])] == []


class TwoRequests(Workflow):
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        model = tuner.as_strands_model(params={"max_tokens": 4}, stream=False)
        messages = [{"role": "user", "content": [{"text": workflow_task.task.main_query}]}]
        stops = []
        for _ in range(2):
            events = [event async for event in model.stream(messages)]
            assert events[0] == {"messageStart": {"role": "assistant"}}
            stops += [event["messageStop"]["stopReason"] for event in events if "messageStop" in event]
        config = model.get_config()
        return WorkflowOutput(reward=0.0, metadata={"stops": stops, "model_id": config["model_id"]})


async def test_one_model_serves_several_requests(runtime: Runtime) -> None:
    """The model reuses one client (`client=`): a second request must not find it closed."""
    executor = RolloutExecutor(runtime, TwoRequests)
    executor.settings.group_size = 1
    (episode,) = await executor.run(TASKS)
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata["model_id"] == runtime.config.model.served_name
    assert len(episode.metadata["stops"]) == 2  # "max_tokens", unless the random model happens to stop early
    calls = runtime.store.calls(episode.episode_id)
    assert len(calls) == 2 and all(0 < len(call.completion_ids or []) <= 4 for call in calls)
    assert all(call.agent_name == "default" and call.sampling["max_tokens"] == 4 for call in calls)


def test_the_plugin_is_light() -> None:
    """Loading the plugin imports neither Strands (until a model is made), nor the trainer, nor another adapter."""
    adapter = registry_with(strands_plugin).adapter("strands")
    assert adapter.tuner_methods() == ("as_strands_model",) and adapter.missing_modules() == []
    assert adapter.install_hint() == "pip install 'ajet[strands]'"
    code = (
        "import sys, ajet.adapters.strands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'strands' or m.startswith('ajet.trainer') "
        "or (m.startswith('ajet.adapters.') and not m.startswith('ajet.adapters.strands'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a completion cut at max_tokens, and OpenAI-style messages ----------------------------------------------

LONG_ANSWER = "The answer is five, because two and three make five when added together."


class CutOff(Workflow):
    """A Strands agent whose answer is cut at 6 tokens: by default the turn ends with the cut text."""

    on_max_tokens: str = "end_turn"

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        import strands

        model = tuner.as_strands_model(params={"max_tokens": 6}, on_max_tokens=self.on_max_tokens)
        agent = strands.Agent(model=model, callback_handler=None)
        result = await agent.invoke_async(workflow_task.task.main_query)
        return WorkflowOutput(reward=0.0, metadata={"stop_reason": result.stop_reason, "text": str(result)})


async def test_a_completion_cut_at_max_tokens_ends_the_turn(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    episode, (call,) = await run_scripted(tiny_model_and_tokenizer, [LONG_ANSWER], CutOff, TASKS[0])
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata["stop_reason"] == "end_turn"
    assert LONG_ANSWER.startswith(episode.metadata["text"].strip()) and episode.metadata["text"].strip()
    assert call.finish_reason == "length" and len(call.completion_ids or []) == 6  # training sees the cut


async def test_on_max_tokens_raise_keeps_strands_behaviour(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    episode, _ = await run_scripted(
        tiny_model_and_tokenizer, [LONG_ANSWER], lambda: CutOff(on_max_tokens="raise"), TASKS[0]
    )
    assert episode.status == EpisodeStatus.FAILED and "MaxTokensReachedException" in (episode.error or "")


OPENAI_PROMPT = [
    {"role": "user", "content": "What is 2 + 3?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "5"},
    {"role": "user", "content": [{"type": "text", "text": "So the answer is?"}]},
]


class FromOpenAIMessages(Workflow):
    """A conversation kept as OpenAI messages (as Osmosis' `ctx.prompt`), continued by a Strands agent."""

    convert: bool = True

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        import strands

        # Unconverted, the literal Osmosis form: `messages=ctx.prompt`, text content as a string
        messages = to_strands_messages(OPENAI_PROMPT) if self.convert else OPENAI_PROMPT[:1]
        agent = strands.Agent(
            model=tuner.as_strands_model(),
            messages=messages,
            system_prompt="Be brief.",
            callback_handler=None,
        )
        result = await agent.invoke_async()
        return WorkflowOutput(reward=0.0, metadata={"text": str(result)})


async def test_converted_openai_messages_reach_the_model(tiny_model_and_tokenizer: tuple[Any, Any]) -> None:
    episode, (call,) = await run_scripted(tiny_model_and_tokenizer, ["5."], FromOpenAIMessages, TASKS[0])
    assert episode.status == EpisodeStatus.OK, episode.error
    assert episode.metadata["text"].strip() == "5."
    assert [m["role"] for m in call.messages] == ["system", "user", "assistant", "tool", "user"]
    assert call.messages[2]["tool_calls"][0]["function"]["name"] == "add"
    assert call.messages[3]["tool_call_id"] == "c1" and "5" in str(call.messages[3]["content"])


async def test_unconverted_openai_messages_fail_with_the_fix(
    tiny_model_and_tokenizer: tuple[Any, Any],
) -> None:
    episode, calls = await run_scripted(
        tiny_model_and_tokenizer, ["unused"], lambda: FromOpenAIMessages(convert=False), TASKS[0]
    )
    assert episode.status == EpisodeStatus.FAILED and calls == []
    assert "messages[0] is an OpenAI-style message" in (episode.error or "")
    assert "to_strands_messages" in (episode.error or "")


def test_to_strands_messages() -> None:
    converted = to_strands_messages(
        [*OPENAI_PROMPT[:3], {"role": "tool", "tool_call_id": "c2", "content": "6"}, OPENAI_PROMPT[3]]
    )
    assert converted == [
        {"role": "user", "content": [{"text": "What is 2 + 3?"}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "c1", "name": "add", "input": {"a": 2, "b": 3}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "c1", "status": "success", "content": [{"text": "5"}]}},
                {"toolResult": {"toolUseId": "c2", "status": "success", "content": [{"text": "6"}]}},
            ],
        },
        {"role": "user", "content": [{"text": "So the answer is?"}]},
    ]
    assert to_strands_messages(converted) == converted  # Strands messages pass through
    with pytest.raises(ValueError, match=r"messages\[0\] is a system message.*Agent\(system_prompt="):
        to_strands_messages([{"role": "system", "content": "Be brief."}])
