"""The tuner's other AgentScope forms, in-process on the tiny model, for the installed major (1.x or 2.x):
ASTuner's `model=tuner`, `register_model` / `get_model` and `ModelTuner`; native debug models counted (calls
and failures) in `untrained_calls`; the install hint when a workflow's AgentScope import fails; and workflow
instance attributes set inside `execute`. The seeds' own code runs end to end in `tests/seeds/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import ajet
import ajet.adapters.agentscope as agentscope_plugin
from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.config import ConfigError, parse_config
from ajet.core.engines.transformers_engine import TransformersEngine
from ajet.core.gateway.keys import split_untrained
from ajet.core.import_hints import install_hint
from ajet.core.loading import load_workflow_factory
from ajet.core.rollout import local_tuner
from ajet.core.runtime import Runtime
from tests.adapters.runtimes import adapter_runtime

agentscope = pytest.importorskip("agentscope")
from agentscope.model import ChatModelBase  # noqa: E402

MAJOR = agentscope_plugin.installed_major_version()


@pytest.fixture
async def runtime(tiny_model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[Runtime]:
    async with adapter_runtime(agentscope_plugin, TransformersEngine(*tiny_model_and_tokenizer)) as rt:
        yield rt


def tuner_for(runtime: Runtime, episode_id: str, **kwargs: Any) -> AjetTuner:
    return local_tuner(runtime, episode_id, **kwargs)


class NativeModel(ChatModelBase):
    """A native AgentScope model of the installed major that answers "ok", or raises when `fail` is set: the
    stand-in for e.g. `OpenAIChatModel(...)` pointed at a remote endpoint."""

    def __init__(self, fail: bool = False) -> None:
        if MAJOR >= 2:
            from agentscope.credential import CredentialBase
            from agentscope.formatter import OpenAIChatFormatter

            super().__init__(
                credential=CredentialBase(), model="remote", parameters=self.Parameters(), stream=False
            )
            self.formatter = OpenAIChatFormatter()
        else:
            super().__init__(model_name="remote", stream=False)
        self.fail = fail

    def _answer(self) -> Any:
        if self.fail:
            raise ConnectionError("remote endpoint unreachable")
        from agentscope.message import TextBlock
        from agentscope.model import ChatResponse

        if MAJOR >= 2:
            return ChatResponse(content=[TextBlock(text="ok")], is_last=True)
        return ChatResponse(content=[TextBlock(type="text", text="ok")])

    async def _call_api(self, *args: Any, **kwargs: Any) -> Any:  # 2.x
        return self._answer()

    if MAJOR < 2:

        async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # 1.x: the abstract method
            return self._answer()


def test_model_tuner_is_ajet_tuner() -> None:
    assert ajet.ModelTuner is AjetTuner and "ModelTuner" in ajet.__all__


async def test_the_tuner_stands_for_its_default_model(runtime: Runtime) -> None:
    """`model=tuner`: reading a model attribute or calling the tuner goes to one `as_agentscope_model()`."""
    tuner = tuner_for(runtime, "e-itself", framework="agentscope")
    assert tuner.stream is False
    name_attribute = "model" if MAJOR >= 2 else "model_name"
    assert getattr(tuner, name_attribute) == runtime.config.model.served_name
    model = tuner._itself
    assert type(model).__name__ == "OpenAIChatModel" and tuner.handle().agent_name == "default"
    tuner.stream = True  # AgentScope 1.x's ReActAgent sets `model.stream`: it is the model's
    assert model.stream is True and "stream" not in vars(tuner)
    model.stream = False
    with pytest.raises(AttributeError, match="nor has the OpenAIChatModel"):
        _ = tuner.no_such_attribute


async def test_the_tuner_as_a_model_needs_the_framework(runtime: Runtime) -> None:
    tuner = tuner_for(runtime, "e-no-framework")
    assert not hasattr(tuner, "stream")
    with pytest.raises(AttributeError, match="framework: agentscope"):
        _ = tuner.stream
    tuner.register_model("werewolf", default_model=None)
    with pytest.raises(Exception, match=r"add e\.g\. `framework: agentscope` to the config"):
        tuner.get_model("werewolf")


async def test_register_and_get_model_route_by_trainable_targets(runtime: Runtime) -> None:
    tuner = tuner_for(runtime, "e-roles", framework="agentscope", trainable_targets=["werewolf"])
    native = NativeModel()
    tuner.register_model("werewolf", default_model=NativeModel())
    tuner.register_model("villager", default_model=native)
    trained = tuner.get_model("werewolf")
    assert type(trained).__name__ == "OpenAIChatModel", "a trained role gets the policy through the gateway"
    untrained = tuner.get_model("villager")
    assert isinstance(untrained, NativeModel) and untrained is not native, (
        "a counting copy of its default model"
    )
    handle = tuner.handle("villager", "villager", native)
    assert (handle.agent_name, handle.target_tag, handle.trainable) == ("villager", "villager", False)
    with pytest.raises(KeyError, match=r"register_model\('seer', default_model=\.\.\.\) first"):
        tuner.get_model("seer")


async def test_native_debug_model_calls_and_failures_are_counted(runtime: Runtime) -> None:
    episode_id = "e-native"
    tuner = tuner_for(runtime, episode_id, framework="agentscope", trainable_targets=["werewolf"])
    ok = tuner.as_agentscope_model(agent_name="P1", target_tag="villager", debug_model=NativeModel())
    broken = NativeModel(fail=True)
    failing = tuner.as_agentscope_model(agent_name="P2", target_tag="seer", debug_model=broken)
    for _ in range(2):
        response = await ok(messages=[])
        block = response.content[0]
        assert (block.text if MAJOR >= 2 else block["text"]) == "ok"  # 1.x blocks are TypedDicts
    with pytest.raises(ConnectionError):  # the error still reaches the agent
        await failing(messages=[])
    assert broken.fail and type(broken) is NativeModel, "the user's own object is left as it was"
    counts = tuner.native_untrained_calls()  # the rollout adds them to the gateway's own count
    assert counts == {"villager": 2, "seer": 1, "seer (failed)": 1}
    assert split_untrained(counts) == ({"villager": 2, "seer": 1}, {"seer": 1})


def test_agentscope_import_errors_name_the_extra_of_the_other_major() -> None:
    if MAJOR >= 2:
        exc = ImportError("cannot import name 'ReActAgent' from 'agentscope.agent'", name="agentscope.agent")
        hint = install_hint(exc)
        assert (
            hint and "pip install 'ajet[agentscope1]'" in hint and "pip install -e '.[agentscope1]'" in hint
        )
    else:
        exc = ImportError("cannot import name 'Agent' from 'agentscope.agent'", name="agentscope.agent")
        hint = install_hint(exc)
        assert hint and "pip install 'ajet[agentscope]'" in hint
    assert install_hint(ImportError("No module named 'numpyy'", name="numpyy")) is None


def write_workflow(tmp_path: Path, source: str) -> Path:
    (tmp_path / "wf.py").write_text(source)
    return tmp_path


def test_loading_a_workflow_of_the_other_major_names_the_extra(tmp_path: Path) -> None:
    name, extra = ("ReActAgent", "agentscope1") if MAJOR >= 2 else ("Agent", "agentscope")
    source = f"from agentscope.agent import {name}\nfrom ajet import Workflow\n\nclass W(Workflow):\n"
    source += "    async def execute(self, workflow_task, tuner):\n        ...\n"
    base = write_workflow(tmp_path, source)
    config = parse_config({"workflow": "wf.py:W"}, base_dir=base)
    with pytest.raises(ConfigError, match=rf"workflow.path: .*{name}.*pip install 'ajet\[{extra}\]'"):
        load_workflow_factory(config)


class Stateful(Workflow):
    max_turns: int = 2

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        self.toolkit = ["a tool"]  # the seeds' `self.toolkit = Toolkit()`
        self.agent = object()
        return WorkflowOutput(reward=float(len(self.toolkit)))


async def test_workflow_instance_attributes_are_allowed_and_args_still_checked() -> None:
    workflow = Stateful(max_turns=3)
    task = WorkflowTask.model_validate(
        {"task": {"task_id": "t", "main_query": "q"}, "episode_id": "e", "group_id": "g"}
    )
    output = await workflow.execute(task, None)  # type: ignore[arg-type]
    assert output.reward == 1.0 and workflow.toolkit == ["a tool"]
    assert workflow.model_dump() == {"trainable_targets": None, "max_turns": 3}, "state is not a field"
    with pytest.raises(Exception, match="max_turn"):
        Stateful(max_turn=3)  # type: ignore[call-arg]
