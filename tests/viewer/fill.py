"""Run directories for the viewer tests, written the way `ajet train` writes them (config.yaml, run.json,
metrics.jsonl, a SQLite store) but filled directly, so each page has known content to assert on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from ajet.core.store import SqliteStore
from ajet.core.store.records import MismatchRecord, RunRecord, SampleRecord
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, LlmCall

TRACEBACK = (
    'Traceback (most recent call last):\n  File "flow.py", line 7, in execute\nZeroDivisionError: boom'
)


def write_run_files(
    run_dir: Path, run_id: str, config: dict[str, Any], metrics: list[dict[str, Any]]
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "run.json").write_text(json.dumps({"base_dir": str(run_dir.parent), "run_id": run_id}))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))


def metrics_rows(steps: int) -> list[dict[str, Any]]:
    rows = []
    for step in range(1, steps + 1):
        row = {
            "step": step,
            "time": 1000.0 + step,
            "rollout/reward_mean": 0.1 * step,
            "rollout/success_rate": 0.05 * step,
            "train/loss": 1.0 / step,
            "train/entropy": 2.0 - 0.1 * step,
            "rollout/tokens_per_s": 100.0 + step,
        }
        if step % 2 == 0:
            row["val/success_rate"] = {2: 0.5, 4: 0.75, 6: 0.625}.get(step, 0.5)
        rows.append(row)
    return rows


def episode(run_id: str, index: int, **fields: Any) -> Episode:
    task = LabeledTask(task_id=f"t{index % 7}", main_query=f"What is {index} + 1?", label=str(index + 1))
    base: dict[str, Any] = {
        "episode_id": f"ep-{index:05d}",
        "run_id": run_id,
        "task": task,
        "group_id": f"g{index // 4}",
        "repeat_index": index % 4,
        "status": EpisodeStatus.OK,
        "reward": (index % 5) / 4,
        "phase": "train",
        "step": 1 + index // 8,
        "started_at": 1000.0 + index,
        "finished_at": 1000.5 + index,
    }
    return Episode(**{**base, **fields})


def call(episode_id: str, seq: int, agent: str, messages: list[dict[str, Any]], **fields: Any) -> LlmCall:
    base: dict[str, Any] = {
        "call_id": f"{episode_id}-c{seq}",
        "episode_id": episode_id,
        "seq": seq,
        "agent_name": agent,
        "target_tag": agent,
        "messages": messages,
        "prompt_ids": [1, 2, 3],
        "completion_ids": [4, 5],
        "logprobs": [-0.05, -3.0],
        "completion_text": "four five",
        "finish_reason": "stop",
        "response": {"content": "four five"},
    }
    return LlmCall(**{**base, **fields})


def fill_demo_store(store: SqliteStore, run_id: str, count: int) -> None:
    """`count` plain episodes (8 per step, rewards 0..1), the 4th failed with a traceback; plus two special ones:
    a multi-agent episode (ep-multi: per-role rewards, a tool call, two samples, a merge mismatch) and a
    validation episode (ep-val)."""
    store.put_run(
        RunRecord(run_id=run_id, name="demo", run_dir="", status="running", step=2, started_at=time.time())
    )
    for index in range(count):
        if index == 3:
            store.add_episode(
                episode(
                    run_id,
                    index,
                    status=EpisodeStatus.FAILED,
                    reward=None,
                    error="ZeroDivisionError: boom",
                    traceback=TRACEBACK,
                )
            )
        else:
            store.add_episode(episode(run_id, index))
    store.add_episode(
        episode(
            run_id,
            900,
            episode_id="ep-multi",
            step=2,
            reward=0.5,
            target_rewards={"wolf": 1.0, "villager": -1.0},
        )
    )
    question = {"role": "user", "content": "Who is the wolf?"}
    tool_call = {
        "id": "call-1",
        "type": "function",
        "function": {"name": "vote", "arguments": '{"player": "bob"}'},
    }
    wolf_first = call(
        "ep-multi",
        0,
        "wolf",
        [{"role": "system", "content": "You are a wolf."}, question],
        prompt_ids=[10, 11, 12],
        completion_ids=[13, 14],
        logprobs=[-0.2, -4.5],
        response={"content": None, "tool_calls": [tool_call]},
        finish_reason="tool_calls",
    )
    villager = call("ep-multi", 1, "villager", [question], response={"content": "I trust everyone."})
    wolf_second = call(
        "ep-multi",
        2,
        "wolf",
        [
            {"role": "system", "content": "You are a wolf."},
            question,
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": "call-1", "content": "bob was voted out"},
        ],
        prompt_ids=[10, 11, 12, 99, 15],
        completion_ids=[16],
        logprobs=[-0.7],
        response={"content": "Good."},
    )
    for c in (wolf_first, villager, wolf_second):
        store.append_call(c)
    store.add_samples(
        [
            SampleRecord(
                run_id=run_id,
                step=2,
                episode_id="ep-multi",
                agent_name="wolf",
                target_tag="wolf",
                call_ids=[wolf_first.call_id],
                input_ids=[10, 11, 12, 13, 14],
                loss_mask=[0, 0, 0, 1, 1],
                old_logprobs=[0.0, 0.0, 0.0, -0.2, -4.5],
                advantage=0.71,
                reward=1.0,
            ),
            SampleRecord(
                run_id=run_id,
                step=2,
                episode_id="ep-multi",
                agent_name="wolf",
                target_tag="wolf",
                call_ids=[wolf_second.call_id],
                input_ids=[10, 11, 12, 99, 15, 16],
                loss_mask=[0, 0, 0, 0, 0, 1],
                old_logprobs=[0.0, 0.0, 0.0, 0.0, 0.0, -0.7],
                advantage=0.71,
                reward=1.0,
            ),
        ]
    )
    store.add_mismatches(
        [
            MismatchRecord(
                run_id=run_id,
                step=2,
                episode_id="ep-multi",
                agent_name="wolf",
                call_id=wolf_second.call_id,
                reason="completion_retokenized",
                position=3,
                expected=13,
                found=99,
            )
        ]
    )
    store.add_episode(episode(run_id, 901, episode_id="ep-val", phase="val", step=2, reward=1.0))
    store.append_call(call("ep-val", 0, "default", [{"role": "user", "content": "val question"}]))


def make_run(
    root: Path, name: str, model_path: str, *, episodes: int = 20, steps: int = 4, run_id: str | None = None
) -> Path:
    """A run directory `root/name` with `episodes` plain episodes (plus ep-multi and ep-val) and `steps` steps."""
    run_id = run_id or f"run-{name}"
    run_dir = root / name
    config = {
        "name": name,
        "model": {"path": model_path},
        "train": {"steps": steps, "lr": 0.001},
        "rollout": {"group_size": 4},
        "trainable_targets": ["wolf", "villager"],
    }
    write_run_files(run_dir, run_id, config, metrics_rows(steps))
    store = SqliteStore(run_dir / "ajet.sqlite")
    try:
        fill_demo_store(store, run_id, episodes)
    finally:
        store.close()
    return run_dir
