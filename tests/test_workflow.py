"""The Workflow base class and the public types."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ajet import AjetTuner, LabeledTask, Task, Workflow, WorkflowOutput, WorkflowTask
from ajet.core.types import EpisodeStatus, InvalidTransition, LlmCall, check_transition


class Seeded(Workflow):
    trainable_targets: list[str] | None = ["werewolf"]
    max_turns: int = 3

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        return WorkflowOutput(reward=1.0)


def test_class_fields_work_as_pydantic_fields() -> None:
    assert Seeded().trainable_targets == ["werewolf"]
    assert Seeded(max_turns=5, trainable_targets=None).max_turns == 5
    with pytest.raises(ValidationError, match="max_tuns"):
        Seeded(max_tuns=5)


def test_empty_trainable_targets_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match=r"trainable_targets=\[\] would train nothing"):
        Seeded(trainable_targets=[])


def test_execute_is_required() -> None:
    class NoExecute(Workflow):
        pass

    with pytest.raises(TypeError, match="execute"):
        NoExecute()


def test_workflow_output_allows_a_missing_reward_for_judgers() -> None:
    assert WorkflowOutput().reward is None
    assert WorkflowOutput(reward=True).reward == 1.0
    with pytest.raises(ValidationError):
        WorkflowOutput(reward="high")


def test_label_stays_out_of_the_workflows_task() -> None:
    labeled = LabeledTask(task_id="1", main_query="2+2?", metadata={"k": 1}, label=4)
    task = labeled.without_label()
    assert isinstance(task, Task) and not isinstance(task, LabeledTask)
    assert task.model_dump() == {"task_id": "1", "main_query": "2+2?", "metadata": {"k": 1}}


def test_status_table() -> None:
    check_transition(EpisodeStatus.PENDING, EpisodeStatus.RUNNING)
    check_transition(EpisodeStatus.RUNNING, EpisodeStatus.TIMED_OUT)
    with pytest.raises(InvalidTransition, match="cannot go from ok to running"):
        check_transition(EpisodeStatus.OK, EpisodeStatus.RUNNING)


def test_llm_call_requires_aligned_ids_and_logprobs() -> None:
    base = {"episode_id": "e", "messages": [], "finish_reason": "stop", "response": {}}
    LlmCall(**base, completion_ids=[1, 2], logprobs=[-0.1, -0.2])
    LlmCall(**base)  # a remote endpoint: no ids
    with pytest.raises(ValidationError, match="same length"):
        LlmCall(**base, completion_ids=[1, 2], logprobs=[-0.1])
    with pytest.raises(ValidationError, match="both"):
        LlmCall(**base, completion_ids=[1])
