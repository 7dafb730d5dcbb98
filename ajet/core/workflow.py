"""The user's side of the contract: subclass `Workflow`, implement `execute`, return a `WorkflowOutput`."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_validator

from ajet.core.types import WorkflowOutput, WorkflowTask

if TYPE_CHECKING:
    from ajet.core.tuner import AjetTuner


class Workflow(BaseModel):
    """Wraps an unchanged agent. One instance runs one episode, so instance state never leaks between episodes.

    Class fields are pydantic fields: set them in the class body, or from the config's `workflow.args`.
    `trainable_targets`: None trains every agent that takes its model from the tuner; a list trains only the
    agents whose `target_tag` (or `agent_name` when no tag is given) is listed.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    trainable_targets: list[str] | None = None

    @field_validator("trainable_targets")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) == 0:
            raise ValueError(
                "trainable_targets=[] would train nothing. Use None to train every agent that uses the tuner, "
                "or list the target tags to train, e.g. ['werewolf']"
            )
        return value

    @abstractmethod
    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        """Run the agent on `workflow_task.task` with models from `tuner`, and return its reward."""
