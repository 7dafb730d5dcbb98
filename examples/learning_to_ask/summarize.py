"""Prints what a set of episodes did: mean reward, facts found, answer accuracy, format errors, turns.

ajet debug -c examples/learning_to_ask/config.yaml --split val --tasks 16 --out runs/ask-before.jsonl
python examples/learning_to_ask/summarize.py runs/ask-before.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def summarize(episodes: list[dict[str, Any]]) -> dict[str, float]:
    scored = [e for e in episodes if e["status"] == "ok" and e["reward"] is not None]
    if not scored:
        raise SystemExit("no scored episodes in the file")
    meta = [e["metadata"] for e in scored]
    n = len(scored)
    return {
        "episodes": n,
        "mean_reward": sum(e["reward"] for e in scored) / n,
        "facts_found": sum(m["facts_found"] / m["facts_hidden"] for m in meta) / n,
        "answered": sum(m["answer"] is not None for m in meta) / n,
        "accuracy": sum(bool(m["correct"]) for m in meta) / n,
        "format_errors_per_episode": sum(m["format_errors"] for m in meta) / n,
        "questions_per_episode": sum(m["questions"] for m in meta) / n,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Summarize `ajet debug --out` episodes of learning_to_ask.")
    parser.add_argument("trajectories", type=Path)
    args = parser.parse_args()
    episodes = [json.loads(line) for line in args.trajectories.read_text().splitlines() if line.strip()]
    for key, value in summarize(episodes).items():
        print(f"{key:>26}  {value:.3f}" if isinstance(value, float) else f"{key:>26}  {value}")
    answers = Counter(str(e["metadata"]["answer"]) for e in episodes if e["status"] == "ok")
    print(f"{'answers':>26}  {dict(answers)}")
