"""Writes data/demonstrations.jsonl: scripted episodes that walk a shortest path to the goal, one `move` call per
turn with the lake's real observation as the tool result, for the supervised warm start (warm_start.yaml).
The maps are the first training maps, never validation ones.

    python examples/frozen_lake/make_demonstrations.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from frozen_lake_env import FrozenLake, frozen_lake_tasks, solve  # noqa: E402
from workflow import MOVE_TOOL, SYSTEM_PROMPT  # noqa: E402


def demonstration(rows: list[str]) -> dict[str, Any]:
    lake = FrozenLake(rows)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": lake.describe()},
    ]
    for turn, direction in enumerate(solve(rows) or []):
        call_id = f"call_{turn}"
        arguments = json.dumps({"direction": direction})
        call = {"id": call_id, "type": "function", "function": {"name": "move", "arguments": arguments}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": lake.step(direction).observation}
        )
    assert lake.reward == 1.0, rows
    return {"messages": messages, "tools": [MOVE_TOOL]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the scripted demonstrations for warm_start.yaml.")
    parser.add_argument("--count", type=int, default=64, help="how many demonstrations (default 64)")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "demonstrations.jsonl")
    args = parser.parse_args()
    rows = [demonstration(task.metadata["map"]) for task in frozen_lake_tasks("train", train_size=args.count)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} demonstrations to {args.out}")
