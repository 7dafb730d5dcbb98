"""What an evaluation found, per task and in total, from its episodes: the numbers `ajet eval` prints and
writes as JSON.

An episode succeeds when it finished ok and its workflow (or the judger) says `is_success`; when neither sets
`is_success`, a reward above 0 counts as a success. An episode that failed or timed out is a sample that did not
succeed: it counts in n, never in c, and is reported in `failed` / `timed_out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ajet.core.types import Episode, EpisodeStatus, LabeledTask
from ajet.eval.passk import pass_at_k

Source = Literal["base", "model", "run"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskResult(_Record):
    task_id: str
    n: int = Field(description="samples (episodes) of the task")
    successes: int = Field(description="samples that succeeded (c)")
    failed: int = 0
    timed_out: int = 0
    mean_reward: float | None = Field(description="mean reward of the samples that have one (None: none has)")
    pass_at_k: dict[int, float] = Field(description="k -> the unbiased pass@k estimate from (n, c)")


class EvalReport(_Record):
    """One model's evaluation: totals, then one row per task."""

    label: str = Field(description="how the tables name this model")
    source: Source = Field(
        description="base (the config's model.path), model (a directory) or run (a checkpoint)"
    )
    model_path: str = Field(description="what the engine loaded")
    run_dir: str = Field(
        description="the run directory its episodes are in (base, --model: in the eval directory)"
    )
    checkpoint: str | None = Field(None, description="for a run's checkpoint: its directory")
    step: int | None = Field(None, description="the training step of the policy evaluated (base: 0)")
    run_id: str = Field(description="the run id its episodes are stored under")
    store: str = Field(description="where its episodes are stored (phase eval)")
    split: str
    k: int = Field(description="samples per task")
    temperature: float
    seed: int
    tasks: int
    episodes: int
    ok: int
    failed: int
    timed_out: int
    successes: int
    success_rate: float = Field(description="successes / episodes (failed and timed-out episodes count as 0)")
    mean_reward: float | None = Field(description="mean reward of the episodes that have one (the ok ones)")
    pass_at_k: dict[int, float] = Field(description="k -> mean over tasks of pass@k, for k = 1..K")
    duration_s: float = Field(description="seconds the episodes took (model loading not counted)")
    load_s: float = Field(description="seconds loading the model took (a LoRA merge included)")
    per_task: list[TaskResult]


def episode_succeeded(episode: Episode) -> bool:
    """The success of one sample: `is_success` when the workflow or judger set it, else reward > 0; an episode
    that did not finish ok never succeeds."""
    if episode.status != EpisodeStatus.OK:
        return False
    if episode.is_success is not None:
        return episode.is_success
    return episode.reward is not None and episode.reward > 0


def task_results(tasks: Sequence[LabeledTask], episodes: Sequence[Episode], k: int) -> list[TaskResult]:
    """One row per task; `episodes` are in the executor's order (task by task, `k` each)."""
    if len(episodes) != len(tasks) * k:
        raise ValueError(f"{len(episodes)} episodes for {len(tasks)} tasks x {k} samples")
    rows = []
    for index, task in enumerate(tasks):
        group = episodes[index * k : (index + 1) * k]
        c = sum(episode_succeeded(e) for e in group)
        rewards = [e.reward for e in group if e.status == EpisodeStatus.OK and e.reward is not None]
        rows.append(
            TaskResult(
                task_id=task.task_id,
                n=k,
                successes=c,
                failed=sum(e.status == EpisodeStatus.FAILED for e in group),
                timed_out=sum(e.status == EpisodeStatus.TIMED_OUT for e in group),
                mean_reward=sum(rewards) / len(rewards) if rewards else None,
                pass_at_k={j: pass_at_k(k, c, j) for j in range(1, k + 1)},
            )
        )
    return rows


def totals(rows: Sequence[TaskResult], episodes: Sequence[Episode], k: int) -> dict[str, object]:
    """The EvalReport fields that sum up `rows` and their `episodes`."""
    rewards = [e.reward for e in episodes if e.status == EpisodeStatus.OK and e.reward is not None]
    successes = sum(row.successes for row in rows)
    return {
        "tasks": len(rows),
        "episodes": len(episodes),
        "ok": sum(e.status == EpisodeStatus.OK for e in episodes),
        "failed": sum(row.failed for row in rows),
        "timed_out": sum(row.timed_out for row in rows),
        "successes": successes,
        "success_rate": successes / len(episodes) if episodes else 0.0,
        "mean_reward": sum(rewards) / len(rewards) if rewards else None,
        "pass_at_k": {j: sum(row.pass_at_k[j] for row in rows) / len(rows) for j in range(1, k + 1)},
    }


class EvalDelta(_Record):
    """A later model against the first one of the same command: its number minus the first's."""

    label: str
    baseline: str
    pass_at_k: dict[int, float]
    success_rate: float
    mean_reward: float | None


class EvalResults(_Record):
    """The JSON file `ajet eval` writes: every model evaluated on the same tasks with the same seeds."""

    config: str
    split: str
    k: int
    tasks: int
    temperature: float
    seed: int
    success: str = Field(
        "is_success when the workflow or judger sets it, else reward > 0; failed and timed-out episodes fail",
        description="what counts as a successful sample",
    )
    created_at: float
    reports: list[EvalReport]
    deltas: list[EvalDelta] = Field(default_factory=list)


def deltas(reports: Sequence[EvalReport]) -> list[EvalDelta]:
    """Each report after the first against the first."""
    if not reports:
        return []
    first = reports[0]
    out = []
    for report in reports[1:]:
        reward = (
            None
            if report.mean_reward is None or first.mean_reward is None
            else report.mean_reward - first.mean_reward
        )
        out.append(
            EvalDelta(
                label=report.label,
                baseline=first.label,
                pass_at_k={j: report.pass_at_k[j] - first.pass_at_k[j] for j in first.pass_at_k},
                success_rate=report.success_rate - first.success_rate,
                mean_reward=reward,
            )
        )
    return out
