"""Writes the example's data: two-digit arithmetic tasks (data/train.jsonl, data/val.jsonl), which
SmolLM2-135M-Instruct gets right 0% of the time on its own, and scripted demonstrations of solving them with the
calculator tool (data/demonstrations.jsonl) for the supervised warm start.

    python examples/math_openai/make_data.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from workflow import CALCULATOR_TOOL, SYSTEM_PROMPT, calculate  # noqa: E402


def make_tasks(n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        op = rng.choice(["+", "-", "*"])
        expression = f"{a} {op} {b}"
        rows.append(
            {
                "id": f"{prefix}-{i}",
                "question": f"What is {expression}?",
                "answer": int(calculate(expression)),
                "expression": expression,
            }
        )
    return rows


def demonstration(row: dict) -> dict:
    """The conversation a good agent has: call the calculator, read the result, answer with it."""
    arguments = json.dumps({"expression": row["expression"]})
    call = {"id": "call_0", "type": "function", "function": {"name": "calculator", "arguments": arguments}}
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": str(row["answer"])},
            {"role": "assistant", "content": f"The answer is {row['answer']}."},
        ],
        "tools": [CALCULATOR_TOOL],
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    train = make_tasks(200, seed=0, prefix="train")
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", make_tasks(50, seed=1, prefix="val"))
    write_jsonl(
        out / "demonstrations.jsonl", [demonstration(row) for row in make_tasks(64, seed=2, prefix="demo")]
    )
