"""Public data types shared by every part of ajet (pydantic, so every boundary validates).

The flow: a `LabeledTask` comes from a task source; the workflow sees only its `Task` part (the label is for
judgers, never for the agent); each run of a workflow on a task is an `Episode`; every LLM request an episode
makes through the gateway is an `LlmCall` with the exact token ids and log-probs the engine produced.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def new_id(prefix: str) -> str:
    """A short random id with a readable prefix (``ep-3f9c...``)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Task(BaseModel):
    """What a workflow is asked to do. Carries no reference answer: see `LabeledTask`."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    main_query: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class LabeledTask(Task):
    """A task with its reference answer (`label`), as task sources produce it and judgers receive it."""

    label: Any | None = None

    def without_label(self) -> Task:
        return Task(task_id=self.task_id, main_query=self.main_query, metadata=dict(self.metadata))


class WorkflowTask(BaseModel):
    """What `Workflow.execute` receives: the task (without its label) and the episode's identity."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    episode_id: str
    group_id: str
    repeat_index: int = 0


class WorkflowOutput(BaseModel):
    """What `Workflow.execute` returns. `reward=None` means a judger scores the episode."""

    model_config = ConfigDict(extra="forbid")

    reward: float | None = None
    #: per-role rewards in multi-agent episodes (target_tag -> reward): samples of a tag listed here are trained
    #: on its reward, the others on `reward`. E.g. a game where the trained werewolves lose and villagers win.
    target_rewards: dict[str, float] = Field(default_factory=dict)
    is_success: bool | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("reward", mode="before")
    @classmethod
    def _reward_is_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return float(value)
        return value

    @field_validator("target_rewards", mode="before")
    @classmethod
    def _target_rewards_are_numbers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {tag: float(r) if isinstance(r, bool) else r for tag, r in value.items()}
        return value

    def reward_for(self, target_tag: str) -> float | None:
        return self.target_rewards.get(target_tag, self.reward)


class EpisodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


# The only status changes an episode may make. Anything else is a bug in the caller and raises.
EPISODE_TRANSITIONS: dict[EpisodeStatus, frozenset[EpisodeStatus]] = {
    EpisodeStatus.PENDING: frozenset({EpisodeStatus.RUNNING, EpisodeStatus.FAILED}),
    EpisodeStatus.RUNNING: frozenset({EpisodeStatus.OK, EpisodeStatus.FAILED, EpisodeStatus.TIMED_OUT}),
    EpisodeStatus.OK: frozenset(),
    EpisodeStatus.FAILED: frozenset(),
    EpisodeStatus.TIMED_OUT: frozenset(),
}
FINISHED_STATUSES = frozenset({EpisodeStatus.OK, EpisodeStatus.FAILED, EpisodeStatus.TIMED_OUT})


class InvalidTransition(ValueError):
    pass


def check_transition(old: EpisodeStatus, new: EpisodeStatus) -> None:
    if new not in EPISODE_TRANSITIONS[old]:
        allowed = ", ".join(sorted(EPISODE_TRANSITIONS[old])) or "none (it is finished)"
        raise InvalidTransition(
            f"episode status cannot go from {old} to {new}; allowed from {old}: {allowed}"
        )


Phase = Literal["train", "val", "eval", "debug"]
PHASES: tuple[Phase, ...] = ("train", "val", "eval", "debug")


class Episode(BaseModel):
    """One run of the workflow on one task. `group_id` ties the episodes of one task (a GRPO group)."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str = Field(default_factory=lambda: new_id("ep"))
    run_id: str = "run"
    task: LabeledTask
    group_id: str
    repeat_index: int = 0
    status: EpisodeStatus = EpisodeStatus.PENDING
    reward: float | None = None
    target_rewards: dict[str, float] = Field(default_factory=dict)  # see WorkflowOutput.target_rewards
    is_success: bool | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: calls of agents whose tag is not trained, per tag: served (by their debug model or the policy) but not
    #: recorded, since nothing trains on them
    untrained_calls: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    #: where the episode ran: backend (local, ray), worker, host, pid
    worker: dict[str, Any] = Field(default_factory=dict)
    #: the episode this one re-runs, when that one's worker was lost (that attempt stays, recorded as failed)
    retry_of: str | None = None
    #: what the episode was run for: a training step's rollouts, a validation, an `ajet eval`, an `ajet debug`
    phase: Phase = "train"
    #: train: the step it was rolled out for; val and eval: the step of the policy evaluated; debug: None
    step: int | None = None
    #: the oldest `model_version` among its recorded calls (None: no calls recorded)
    policy_version: int | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def reward_for(self, target_tag: str) -> float | None:
        """The reward that samples of `target_tag` train on: its own when the workflow gave one, else `reward`."""
        return self.target_rewards.get(target_tag, self.reward)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


FinishReason = Literal["stop", "length", "tool_calls", "error"]


class LlmCall(BaseModel):
    """One chat request an agent made through the gateway, recorded token-for-token.

    `prompt_ids` are the ids the engine was given (the gateway renders the chat template itself, so these are
    exactly what the model saw); `completion_ids` and `logprobs` (one per completion id, of the distribution
    actually sampled from) come straight from the engine. They are `None` for calls served by an engine that does
    not expose tokens (a remote OpenAI-compatible endpoint used for debugging).
    """

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(default_factory=lambda: new_id("call"))
    episode_id: str
    seq: int = 0  # order of the call within its episode
    agent_name: str = "default"
    target_tag: str = "default"
    trainable: bool = True
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    completion_text: str | None = None  # the raw decoded completion, before tool-call parsing
    finish_reason: FinishReason
    response: dict[str, Any]  # the OpenAI-format assistant message returned to the agent
    sampling: dict[str, Any] = Field(default_factory=dict)
    model_version: int = 0
    latency_s: float = 0.0
    created_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _ids_and_logprobs_align(self) -> LlmCall:
        if (self.completion_ids is None) != (self.logprobs is None):
            raise ValueError("completion_ids and logprobs must both be set or both be None")
        if self.completion_ids is not None and len(self.completion_ids) != len(self.logprobs or []):
            raise ValueError(
                f"completion_ids ({len(self.completion_ids)}) and logprobs ({len(self.logprobs or [])}) "
                "must have the same length"
            )
        return self


class SamplingParams(BaseModel):
    """How the engine samples. `temperature=0` means greedy decoding."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=1_000_000)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


def logprob_temperature(sampling: SamplingParams | Mapping[str, Any] | None) -> float:
    """The temperature a recorded log-prob is taken at, under the log-prob contract (docs/logprob-contract.md):
    the call's own temperature, with 0 (greedy) counting as 1. A call whose sampling does not say (an empty
    record) was sampled at SamplingParams' default, 1.0. Engines and the trainer both use this function, so
    they cannot disagree."""
    if sampling is None:
        return 1.0
    value = sampling.temperature if isinstance(sampling, SamplingParams) else sampling.get("temperature")
    if value is None:
        return 1.0
    value = float(value)
    return value if value > 0 else 1.0


class Completion(BaseModel):
    """What a token engine returns for one prompt.

    `logprobs[i]` is log p(ids[i]) under the model's logits divided by the call's temperature (temperature 0
    counts as 1, see `logprob_temperature`), before top-p truncation and before a constraint's grammar mask.
    The trainer recomputes exactly this, per call (docs/logprob-contract.md).
    """

    model_config = ConfigDict(extra="forbid")

    ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: Literal["stop", "length"]
    model_version: int = 0
