"""Writes data/demonstrations.jsonl: scripted conversations that check a known solution with the `evaluate`
tool and answer with it, for the supervised warm start (warm_start.yaml). The puzzles are the first training
puzzles, never validation ones; the tool schema is the one the LangChain agent sends.

    python examples/countdown/make_demonstrations.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from countdown_game import countdown_tasks, describe  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402
from workflow import SYSTEM_PROMPT, make_evaluate_tool  # noqa: E402


def demonstration(query: str, numbers: list[int], target: int, solution: str) -> dict[str, Any]:
    arguments = json.dumps({"expression": solution})
    call = {"id": "call_0", "type": "function", "function": {"name": "evaluate", "arguments": arguments}}
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": query},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": describe(solution, numbers, target)},
            {"role": "assistant", "content": f"<answer>{solution}</answer>"},
        ],
        "tools": [convert_to_openai_tool(make_evaluate_tool(numbers, target, []))],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the scripted demonstrations for warm_start.yaml.")
    parser.add_argument("--count", type=int, default=64, help="how many demonstrations (default 64)")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "demonstrations.jsonl")
    args = parser.parse_args()
    rows = []
    for task in countdown_tasks("train", train_size=args.count):
        meta = task.metadata
        rows.append(demonstration(task.main_query, meta["numbers"], meta["target"], meta["solution"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} demonstrations to {args.out}")
