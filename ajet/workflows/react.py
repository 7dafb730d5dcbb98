"""`ReActWorkflow`: a tool-using agent defined entirely in the config, run natively by whichever framework the
config's `framework:` names.

    workflow:
      path: ajet.workflows.react:ReActWorkflow
      args:
        system_prompt: "You are a calculator. Use the tools, then answer with the number."
        tools: ["tools.py:add", "tools.py:multiply"]   # relative to the config file, or "package.module:fn"
        max_turns: 4
    framework: openai_sdk      # or agentscope, langchain, openai_agents, strands: nothing else changes
    judger: {path: numeric_match, args: {field: answer}}

The agent's final answer goes to `WorkflowOutput.metadata["answer"]` (see `answer_field`) and the config's
judger scores it: the workflow itself never sees the label. Each framework builds its own agent (its own tool
wrappers, its own loop) through its adapter's `run_react`; see `ajet.core.react.ReActSpec` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from ajet.core.adapter import Adapter
from ajet.core.plugins import PluginError
from ajet.core.react import ReActSpec
from ajet.core.tasks import import_object
from ajet.core.types import WorkflowOutput, WorkflowTask
from ajet.core.workflow import Workflow

if TYPE_CHECKING:
    from ajet.core.tuner import AjetTuner


class ReActWorkflow(Workflow):
    system_prompt: str = Field(
        "You are a helpful assistant. Use the tools when they help, then give the final answer.",
        description="the agent's instructions",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="the functions the agent may call, as 'file.py:function' (relative to the config file) or "
        "'package.module:function'; each needs type hints and a docstring",
    )
    max_turns: int = Field(4, ge=1, description="the most model calls per episode")
    agent_name: str | None = Field(
        None, description="the agent's name in the recorded calls (default: default)"
    )
    answer_field: str = Field(
        "answer", description="the metadata key the final answer goes to, for the judger"
    )

    _functions: tuple[Callable[..., Any], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _import_tools(self, info: ValidationInfo) -> ReActWorkflow:
        # `load_workflow_factory` passes the config file's directory as `base_dir` in the validation context.
        base_dir = (info.context or {}).get("base_dir")
        functions = []
        for ref in self.tools:
            try:
                fn = import_object(ref, base_dir)
            except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
                raise ValueError(f"tools: {exc}") from None
            if not callable(fn):
                raise ValueError(f"tools: {ref!r} is a {type(fn).__name__}, not a function")
            functions.append(fn)
        self._functions = tuple(functions)
        ReActSpec(system_prompt=self.system_prompt, query="", tools=self._functions)  # names, docstrings
        return self

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        framework, adapter = _configured_adapter(tuner)
        if adapter.run_react is None:
            runnable = [a.name for a in tuner.adapters() if a.run_react is not None]
            raise PluginError(
                f"framework {framework!r} has no ReAct runner, so ReActWorkflow cannot build its agent: set "
                f"`framework:` to one that has ({', '.join(runnable)}), give the {framework!r} adapter "
                "`Adapter(run_react=...)`, or write your own Workflow around tuner.as_model()"
            )
        model = tuner.as_model(agent_name=self.agent_name)
        spec = ReActSpec(
            system_prompt=self.system_prompt,
            query=workflow_task.task.main_query,
            tools=self._functions,
            max_turns=self.max_turns,
            agent_name=self.agent_name or "assistant",
            model_name=tuner.handle(self.agent_name).model_name,
        )
        answer = await adapter.run_react(model, spec)
        return WorkflowOutput(reward=None, metadata={self.answer_field: answer, "framework": framework})


def _configured_adapter(tuner: AjetTuner) -> tuple[str, Adapter]:
    framework = tuner.framework
    if framework is None:
        raise PluginError(
            "ReActWorkflow runs the agent in the config's framework, and none is set: add e.g. "
            "`framework: openai_sdk` to the config (or agentscope, langchain, openai_agents, strands)"
        )
    return framework, tuner.adapter(framework)
