"""What the store keeps beside episodes and calls, so that a run can be inspected after the fact: the run itself
(one identity across `--resume`), each trained sample with its loss mask and advantage, and each merge mismatch
with its position. Plus `EpisodeQuery`, the filter and page of an episode listing."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ajet.core.types import EpisodeStatus, Phase, new_id

RunStatus = Literal["running", "finished", "failed", "stopped"]


class RunRecord(BaseModel):
    """One run: an `ajet train` (kept across its resumes), an `ajet eval` or an `ajet debug`."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    name: str = "ajet"
    kind: Literal["train", "eval", "debug"] = "train"
    run_dir: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    status: RunStatus = "running"
    step: int = 0  # the last step trained (eval: the step of the checkpoint evaluated)
    started_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None


class SampleRecord(BaseModel):
    """One trained sample as the trainer saw it: its tokens, which were trained, their behaviour log-probs and
    the advantage they were trained with, at the step that trained them."""

    model_config = ConfigDict(extra="forbid")

    sample_id: str = Field(default_factory=lambda: new_id("smp"))
    run_id: str
    step: int
    episode_id: str
    agent_name: str
    target_tag: str
    call_ids: list[str] = Field(default_factory=list)
    input_ids: list[int]
    loss_mask: list[int]
    old_logprobs: list[float]
    advantage: float
    reward: float
    version: int = 0
    created_at: float = Field(default_factory=time.time)


class MismatchRecord(BaseModel):
    """A call that could not extend the previous sample of its agent (see `ajet.trainer.samples.Mismatch`):
    `position` indexes the previous sequence, where its token `expected` met the new prompt's `found`."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    step: int
    episode_id: str
    agent_name: str
    call_id: str
    reason: str
    position: int
    expected: int | None = None
    found: int | None = None


class EpisodeQuery(BaseModel):
    """A page of episodes. Every filter is optional (None: any); `target_tag` keeps the episodes with at least
    one recorded call of that tag; rewards are inclusive bounds."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = None
    phase: Phase | None = None
    step: int | None = None
    status: EpisodeStatus | None = None
    target_tag: str | None = None
    min_reward: float | None = None
    max_reward: float | None = None
    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=1000)
    order: Literal["seq", "-seq"] = "seq"
