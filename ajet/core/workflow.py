"""The user's side of the contract: subclass `Workflow`, implement `execute`, return a `WorkflowOutput`."""

from __future__ import annotations

import functools
import inspect
from abc import abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from ajet.core.import_hints import install_hint
from ajet.core.plugins import PluginRegistry
from ajet.core.targets import check_targets_not_empty
from ajet.core.types import WorkflowOutput, WorkflowTask

if TYPE_CHECKING:
    from ajet.core.tuner import AjetTuner


class Workflow(BaseModel):
    """Wraps an unchanged agent. One instance runs one episode, so instance state never leaks between episodes.

    Class fields are pydantic fields: set them in the class body, or from the config's `workflow.args` (an
    unknown arg is an error). Inside `execute`, any other attribute may be set too (`self.agent = ReActAgent(...)`,
    `self.toolkit = Toolkit()`): it is plain per-episode state, not a field (not validated, not in `model_dump()`).
    `trainable_targets`: None trains every agent that takes its model from the tuner; a list trains only the
    agents whose `target_tag` (or `agent_name` when no tag is given) is listed.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    trainable_targets: list[str] | None = None

    @field_validator("trainable_targets")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        return check_targets_not_empty(value)  # a class default of [] is refused by the loader, same words

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if inspect.iscoroutinefunction(execute):
            cls.execute = _with_install_hints(execute)  # type: ignore[method-assign]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields or hasattr(type(self), name):
            super().__setattr__(name, value)  # a field (or a class attribute): pydantic's rules
        else:
            object.__setattr__(self, name, value)  # instance state: `extra="forbid"` guards the config only

    @abstractmethod
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        """Run the agent on `workflow_task.task` with models from `tuner`, and return its reward."""


def _with_install_hints(
    execute: Callable[..., Coroutine[Any, Any, WorkflowOutput]],
) -> Callable[..., Coroutine[Any, Any, WorkflowOutput]]:
    """`execute`, whose ImportErrors name what to install when an adapter knows (e.g. the seeds' AgentScope
    1.x imports inside `execute` on AgentScope 2.x): the episode's error then says it, not only the name."""

    @functools.wraps(execute)
    async def wrapper(self: Workflow, *args: Any, **kwargs: Any) -> WorkflowOutput:
        try:
            return await execute(self, *args, **kwargs)
        except ImportError as exc:
            tuner = args[1] if len(args) > 1 else None
            registry = getattr(tuner, "_registry", None)
            hint = install_hint(exc, registry if isinstance(registry, PluginRegistry) else None)
            if hint is None:
                raise
            raise type(exc)(f"{exc}. {hint[0].upper()}{hint[1:]}", name=exc.name, path=exc.path) from exc

    return wrapper
