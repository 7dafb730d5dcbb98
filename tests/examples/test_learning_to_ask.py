"""examples/learning_to_ask through the `ajet` CLI with SmolLM2, as a user runs it: `ajet debug`, then a 2-step
`ajet train` (kept small with --set). Each episode is one conversation, so its calls merge into one sample."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ajet.core.tasks import import_object
from tests.examples.cli import ROOT, debug_episodes, train_two_steps

EXAMPLE = ROOT / "examples" / "learning_to_ask"
CONFIG = str(EXAMPLE / "config.yaml")
SMALL = [
    "--set", "rollout.group_size=2", "--set", "rollout.sampling.max_tokens=16",
    "--set", "workflow.args.max_turns=3",
]  # fmt: skip


@pytest.mark.slow
def test_debug_runs_every_episode_and_records_one_growing_conversation(tmp_path: Path) -> None:
    episodes = debug_episodes(CONFIG, tmp_path / "trajectories.jsonl", "--tasks", "1", *SMALL)
    assert len(episodes) == 2
    env = inspect.getmodule(import_object(f"{EXAMPLE / 'patient_env.py'}:Consultation"))
    assert env is not None
    for episode in episodes:
        meta = episode["metadata"]
        case = env.Case.from_metadata(episode["task"]["metadata"])
        # replaying the recorded replies against a fresh patient gives the recorded score
        visit = env.Consultation(case)
        for call in episode["calls"]:
            visit.respond(call["response"]["content"] or "")
        assert episode["reward"] == visit.reward and meta["facts_found"] == len(visit.found)
        assert meta["turns"] == len(episode["calls"]) and 1 <= len(episode["calls"]) <= 3
        assert meta["facts_hidden"] == 4 and meta["diagnosis"] == case.diagnosis
        previous: list[dict] = []
        for call in episode["calls"]:
            messages = call["messages"]
            assert messages[1] == {"role": "user", "content": episode["task"]["main_query"]}
            assert messages[: len(previous)] == previous  # each call extends the last one's conversation
            previous = [*messages, {"role": "assistant", "content": call["response"]["content"]}]
            assert len(call["completion_ids"]) == len(call["logprobs"]) <= 16


@pytest.mark.slow
def test_train_two_steps_merges_each_conversation_into_one_sample(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    steps = train_two_steps(
        CONFIG, run_dir, *SMALL,
        "--set", "train.tasks_per_step=2", "--set", "train.val_every=0", "--set", "train.val_tasks=1",
        "--set", "store=memory",
    )  # fmt: skip
    for row in steps:
        assert row["rollout/episodes"] == row["samples/episodes_used"] == 4
        # An episode's later calls merge into its first one's sample. The base model's odd text (other
        # languages, a reply cut inside a character) sometimes re-tokenizes differently when sent back: such
        # a call starts a new sample and is counted as a mismatch, never merged silently.
        mismatches = sum(v for k, v in row.items() if k.startswith("samples/mismatch/"))
        assert row["samples/samples"] == 4 + mismatches
        assert row["samples/merges"] == row["samples/calls_used"] - row["samples/samples"] > 0
    assert (run_dir / "checkpoints" / "step-000002" / "model" / "model.safetensors").is_file()
