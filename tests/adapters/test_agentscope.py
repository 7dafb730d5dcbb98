"""The `agentscope` adapter end to end: an AgentScope agent with a tool, inside a workflow run by the rollout
executor, through the real gateway and the tiny random model. Every model call must be recorded.

The adapter follows the installed major version. In this project's environment that is 2.x (`Agent`); the 1.x
test (`ReActAgent`, formatter given to the agent) runs where `agentscope<2` is installed instead."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

import ajet.adapters.agentscope as agentscope_plugin
from ajet import AjetTuner, LabeledTask, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.rollout import RolloutExecutor, local_tuner
from ajet.core.runtime import Runtime
from ajet.core.types import EpisodeStatus
from tests.adapters.runtimes import adapter_runtime, registry_with

agentscope = pytest.importorskip("agentscope")
MAJOR = agentscope_plugin.installed_major_version()
needs_v2 = pytest.mark.skipif(MAJOR < 2, reason=f"AgentScope {agentscope.__version__} is installed, not 2.x")
needs_v1 = pytest.mark.skipif(MAJOR != 1, reason=f"AgentScope {agentscope.__version__} is installed, not 1.x")

TASKS = [LabeledTask(task_id="t1", main_query="What is 2 + 3?", label=5)]


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(
        agentscope_plugin, TransformersEngine(*tiny_model_and_tokenizer), timeout_s=30
    ) as rt:
        yield rt


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first integer
        b: the second integer
    """
    return a + b


class CalculatorAgent(Workflow):
    """The user's AgentScope 2.x code, unchanged except that the model comes from the tuner."""

    stream: ClassVar[bool] = False

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        from agentscope.agent import Agent, InjectionConfig
        from agentscope.message import UserMsg
        from agentscope.permission import PermissionBehavior, PermissionDecision
        from agentscope.tool import FunctionTool, Toolkit

        model = tuner.as_agentscope_model(agent_name="calc", target_tag="math", stream=self.stream)
        allow = PermissionDecision(behavior=PermissionBehavior.ALLOW, message="ok")
        agent = Agent(
            name="calc",
            system_prompt="You are a calculator. Use the add tool.",
            model=model,
            toolkit=Toolkit(tools=[FunctionTool(add, permission=allow)]),
            injection_config=InjectionConfig(inject_runtime_state=False),
        )
        msg = await agent.reply(UserMsg(name="user", content=workflow_task.task.main_query))
        text = msg.get_text_content() or ""
        return WorkflowOutput(
            reward=1.0 if "5" in text else 0.0,
            is_success=True,
            metadata={"text": text, "model_type": type(model).__name__, "stream": model.stream},
        )


class StreamingCalculatorAgent(CalculatorAgent):
    stream: ClassVar[bool] = True


class V1CalculatorAgent(Workflow):
    """The same agent written against AgentScope 1.x: `ReActAgent`, the formatter given to the agent."""

    stream: ClassVar[bool] = False

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        from agentscope.agent import ReActAgent
        from agentscope.formatter import OpenAIChatFormatter
        from agentscope.message import Msg, TextBlock
        from agentscope.tool import Toolkit, ToolResponse

        def add(a: int, b: int) -> ToolResponse:  # 1.x tools return a ToolResponse
            """Add two integers.

            Args:
                a (int): the first integer
                b (int): the second integer
            """
            return ToolResponse(content=[TextBlock(type="text", text=str(a + b))])

        toolkit = Toolkit()
        toolkit.register_tool_function(add)
        model = tuner.as_agentscope_model(agent_name="calc", target_tag="math", stream=self.stream)
        agent = ReActAgent(
            name="calc",
            sys_prompt="You are a calculator. Use the add tool.",
            model=model,
            formatter=OpenAIChatFormatter(),
            toolkit=toolkit,
        )
        agent.set_console_output_enabled(False)
        msg = await agent(Msg("user", workflow_task.task.main_query, "user"))
        text = msg.get_text_content() or ""
        return WorkflowOutput(
            reward=1.0 if "5" in text else 0.0,
            is_success=True,
            metadata={"text": text, "model_type": type(model).__name__, "stream": model.stream},
        )


@pytest.mark.parametrize(
    "workflow",
    [
        pytest.param(CalculatorAgent, id="v2", marks=needs_v2),
        pytest.param(StreamingCalculatorAgent, id="v2-stream", marks=needs_v2),
        pytest.param(V1CalculatorAgent, id="v1", marks=needs_v1),
    ],
)
async def test_agentscope_agent_calls_are_recorded(runtime: Runtime, workflow: type[Workflow]) -> None:
    episodes = await RolloutExecutor(runtime, workflow).run(TASKS)
    assert [e.status for e in episodes] == [EpisodeStatus.OK] * 2, [e.error for e in episodes]
    for episode in episodes:
        assert episode.metadata["model_type"] == "OpenAIChatModel"
        assert episode.metadata["stream"] is workflow.stream
        calls = runtime.store.calls(episode.episode_id)
        assert calls, "the agent's model calls did not reach the recorder"
        first = calls[0]
        assert first.agent_name == "calc" and first.target_tag == "math" and first.trainable
        assert [t["function"]["name"] for t in first.tools or []] == ["add"]
        assert first.tools[0]["function"]["parameters"]["properties"].keys() == {"a", "b"}
        assert first.tools[0]["function"]["description"].startswith("Add two integers")
        assert first.messages[0]["role"] == "system" and "calculator" in str(first.messages[0]["content"])
        assert "2 + 3" in str(first.messages[-1]["content"])
        for call in calls:
            assert call.prompt_ids and call.completion_ids
            assert len(call.completion_ids) == len(call.logprobs or [])
        # what the agent answered is what the gateway returned (a text answer ends the ReAct loop)
        if not calls[-1].response.get("tool_calls"):
            assert episode.metadata["text"] == (calls[-1].response["content"] or "")


@needs_v2
async def test_make_model_options(runtime: Runtime) -> None:
    from agentscope.formatter import OpenAIMultiAgentFormatter
    from agentscope.model import OpenAIChatModel

    tuner = local_tuner(runtime, "e-options")
    formatter = OpenAIMultiAgentFormatter()
    model = tuner.as_agentscope_model(
        parameters={"temperature": 0.5, "max_tokens": 4},
        formatter=formatter,
        client_kwargs={"timeout": 12.0},
    )
    assert isinstance(model, OpenAIChatModel)
    assert model.stream is False and model.max_retries == 0 and model.formatter is formatter
    assert model.parameters.temperature == 0.5 and model.parameters.max_tokens == 4
    assert model.client.max_retries == 0 and model.client.timeout == 12.0
    assert model.model == runtime.config.model.served_name
    assert tuner.as_model(framework="agentscope").stream is False


def test_the_plugin_is_light() -> None:
    """Loading the plugin imports neither AgentScope (until a model is made), nor the trainer, nor another adapter."""
    registry = registry_with(agentscope_plugin)
    adapter = registry.adapter("agentscope")
    assert adapter.tuner_methods() == ("as_agentscope_model",) and adapter.missing_modules() == []
    assert adapter.install_hint() == "pip install 'ajet[agentscope]'"
    code = (
        "import sys, ajet.adapters.agentscope; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'agentscope' or m.startswith('ajet.trainer') "
        "or (m.startswith('ajet.adapters.') and not m.startswith('ajet.adapters.agentscope'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
