"""examples/countdown through the `ajet` CLI with SmolLM2, as a user runs it: `ajet debug`, then a 2-step
`ajet train` (kept small with --set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.cli import ROOT, debug_episodes, train_two_steps

pytest.importorskip("langchain_openai")

CONFIG = str(ROOT / "examples" / "countdown" / "config.yaml")
SMALL = ["--set", "rollout.group_size=2", "--set", "rollout.sampling.max_tokens=32"]


@pytest.mark.slow
def test_debug_runs_every_episode_and_records_the_calls(tmp_path: Path) -> None:
    episodes = debug_episodes(CONFIG, tmp_path / "trajectories.jsonl", "--tasks", "1", *SMALL)
    assert len(episodes) == 2
    for episode in episodes:
        assert episode["reward"] in (0.0, 0.1, 1.0), episode["error"]
        assert episode["task"]["metadata"]["numbers"] and "expression" in episode["metadata"]
        assert episode["calls"]
        for call in episode["calls"]:
            assert call["tools"][0]["function"]["name"] == "evaluate"
            assert call["messages"][0]["role"] == "system" and "Countdown" in call["messages"][0]["content"]
            assert call["prompt_ids"] and call["completion_ids"]
            assert len(call["completion_ids"]) == len(call["logprobs"]) <= 32


@pytest.mark.slow
def test_train_two_steps_writes_metrics_and_a_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    steps = train_two_steps(
        CONFIG, run_dir, *SMALL,
        "--set", "train.tasks_per_step=2", "--set", "train.val_every=0", "--set", "train.val_tasks=1",
        "--set", "store=memory",
    )  # fmt: skip
    assert all(row["rollout/episodes"] == 4 for row in steps)
    assert (run_dir / "checkpoints" / "step-000002" / "model" / "model.safetensors").is_file()
