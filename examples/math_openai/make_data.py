"""Writes data/train.jsonl and data/val.jsonl: single-digit arithmetic, where SmolLM2-135M has some signal."""

import json
import random
from pathlib import Path


def make(n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        op = rng.choice(["+", "+", "-", "*"])
        expression = f"{a} {op} {b}"
        answer = eval(expression)  # trusted: built above from digits and one operator
        rows.append(
            {
                "id": f"{prefix}-{i}",
                "question": f"What is {expression}?",
                "answer": answer,
                "expression": expression,
            }
        )
    return rows


if __name__ == "__main__":
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, n, seed in (("train", 200, 0), ("val", 50, 1)):
        with (out / f"{name}.jsonl").open("w") as f:
            for row in make(n, seed, name):
                f.write(json.dumps(row) + "\n")
