"""Demonstrations for supervised warm starts (`algorithm: sft`): trajectories to imitate, turned into the same
recorded calls the RL path uses, so the same sample builder (timeline merging, loss on the model's own tokens
only) makes the training samples.

A JSONL file, one trajectory per line, in either form:

- what `ajet debug --out` writes: an episode with its recorded `calls` (each with `messages`, `tools` and the
  `response` message). Calls served by a remote model have no token ids; they are tokenized here with the
  policy's chat template, exactly as the gateway would have rendered them.
- a scripted conversation: `{"messages": [...], "tools": [...]}`; every assistant message is a turn to imitate,
  the messages before it its prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ajet.core.gateway.render import ChatRenderer
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, LlmCall, new_id


class DemonstrationError(ValueError):
    pass


def load_demonstrations(path: Path, renderer: ChatRenderer) -> list[tuple[Episode, list[LlmCall]]]:
    if not path.exists():
        raise DemonstrationError(f"train.demonstrations: {path} does not exist")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DemonstrationError(f"{path}:{number}: not valid JSON ({exc})") from None
        try:
            pairs.append(_trajectory(record, renderer, f"demo-{number}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DemonstrationError(
                f"{path}:{number}: not a trajectory ({exc}); write {{'messages': [...], 'tools': [...]}} or a line "
                "of `ajet debug --out`"
            ) from None
    if not pairs:
        raise DemonstrationError(f"train.demonstrations: {path} holds no trajectories")
    return pairs


def _trajectory(record: dict[str, Any], renderer: ChatRenderer, name: str) -> tuple[Episode, list[LlmCall]]:
    if "calls" in record:
        turns = [(c["messages"], c.get("tools"), c["response"]) for c in record["calls"]]
        task = LabeledTask.model_validate(record["task"]) if "task" in record else None
    else:
        messages, tools = record["messages"], record.get("tools")
        turns = [(messages[:i], tools, m) for i, m in enumerate(messages) if m["role"] == "assistant"]
        task = None
    if not turns:
        raise ValueError("it has no assistant turn to imitate")
    task = task or LabeledTask(task_id=name, main_query=_first_user_text(turns[0][0]))
    episode = Episode(task=task, group_id=name, status=EpisodeStatus.OK, reward=1.0)
    calls = []
    for seq, (messages, tools, response) in enumerate(turns):
        prompt_ids = renderer.render(messages, tools)
        completion_ids = renderer.completion_ids(messages, response, tools)
        calls.append(
            LlmCall(
                call_id=new_id("demo"),
                episode_id=episode.episode_id,
                seq=seq,
                messages=messages,
                tools=tools,
                prompt_ids=prompt_ids,
                completion_ids=completion_ids,
                logprobs=[0.0] * len(completion_ids),  # not sampled: SFT ignores behaviour log-probs
                finish_reason="stop",
                response=response,
            )
        )
    return episode, calls


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""
