"""`tokenize_trajectories` / `ajet tokenize`: the rows are the samples the trainer trains on, read back from a
train run's store or an `ajet debug --out` file, with every left-out episode counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ajet import AjetTuner, Workflow, WorkflowOutput, WorkflowTask
from ajet.cli.main import app
from ajet.core.config import parse_config
from ajet.core.models import build_tiny_model
from ajet.core.runtime import build_runtime
from ajet.core.store import SqliteStore
from ajet.trainer.loop import Trainer
from ajet.trainer.run_files import save_run_config
from ajet.trainer.samples import Sample
from ajet.trainer.token_dataset import (
    IGNORE_INDEX,
    TokenDatasetError,
    build_token_dataset,
    tokenize_trajectories,
    trajectories,
    write_token_dataset,
)

ROOT = Path(__file__).parents[1]
GROUP_SIZE = 4


class TwoTurnsSomeFail(Workflow):
    """Two calls in one conversation (they merge into one sample); repeat 2 gives no reward, repeat 3 crashes
    after its first call, so both kinds of exclusion are in every group."""

    async def execute(self, workflow_task: WorkflowTask, tuner: AjetTuner) -> WorkflowOutput:
        client = tuner.as_raw_openai_sdk_client()
        messages: list[dict[str, Any]] = [{"role": "user", "content": workflow_task.task.main_query}]
        first = await client.chat.completions.create(model="ajet-policy", messages=messages)
        if workflow_task.repeat_index == 3:
            raise RuntimeError("the environment crashed")
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "user", "content": "More."},
        ]
        second = await client.chat.completions.create(model="ajet-policy", messages=messages)
        if workflow_task.repeat_index == 2:
            return WorkflowOutput(reward=None)
        text = second.choices[0].message.content or ""
        return WorkflowOutput(reward=float(len(text) % 2 == 0))


def tiny_config(tmp: Path, tiny_dir: Path) -> dict[str, Any]:
    tasks = tmp / "tasks.jsonl"
    tasks.write_text(
        "".join(json.dumps({"task_id": f"t{i}", "main_query": f"Count to {i}."}) + "\n" for i in range(2))
    )
    return {
        "name": "tokenize",
        "workflow": f"{ROOT / 'tests/workflows/parity.py'}:ParityWorkflow",  # the trainer is given TwoTurnsSomeFail
        "model": {"path": str(tiny_dir)},
        "rollout": {"group_size": GROUP_SIZE, "max_concurrency": 4, "sampling": {"max_tokens": 8}},
        "data": {"train": {"kind": "file", "path": str(tasks)}},
        # rloo, not the default: the dataset must take the run's own estimator from its saved config
        "train": {
            "tasks_per_step": 2,
            "advantage_estimator": "rloo",
            "skip_zero_advantage": False,  # so the trainer trains on every sample it builds
            "micro_batch_tokens": 256,
            "logging": {"tensorboard": False},
        },
        "run_dir": str(tmp / "run"),
        "seed": 5,
    }


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> tuple[Path, list[Sample]]:
    """One real training step into a SQLite store in a run directory; returns it and the samples the trainer
    passed to its update."""
    tmp = tmp_path_factory.mktemp("run")
    config = parse_config(tiny_config(tmp, tiny_dir), base_dir=ROOT)
    trained: list[Sample] = []

    async def one_step() -> None:
        runtime = await build_runtime(config)
        try:
            trainer = Trainer(config, runtime, TwoTurnsSomeFail)
            update = trainer.update

            def capture(samples: list[Sample], step: int) -> dict[str, float]:
                trained.extend(samples)
                return update(samples, step)

            trainer.update = capture  # type: ignore[method-assign]
            await trainer.train_step(1)
        finally:
            await runtime.close()

    asyncio.run(one_step())
    save_run_config(config.resolved_run_dir(), config)  # what `ajet train` writes beside the store
    return config.resolved_run_dir(), trained


def test_rows_are_the_samples_the_trainer_trained_on(train_run: tuple[Path, list[Sample]]) -> None:
    run_dir, trained = train_run
    dataset = build_token_dataset(run_dir)
    assert dataset.advantage_estimator == "rloo"
    assert trained and len(dataset.rows) == len(trained)
    assert any(s.num_calls == 2 for s in trained), "the two turns merged into one sample"
    assert any(s.advantage != 0.0 for s in trained), "the rewards were mixed: advantages carry signal"
    for row, sample in zip(dataset.rows, trained, strict=True):
        assert row["input_ids"] == sample.input_ids
        assert row["action_mask"] == sample.loss_mask
        assert row["old_logprobs"] == sample.old_logprobs
        assert (row["advantage"], row["reward"]) == (sample.advantage, sample.reward)
        assert (row["episode_id"], row["group_id"], row["call_ids"]) == (
            sample.episode_id,
            sample.group_id,
            sample.call_ids,
        )
        assert (row["agent_name"], row["target_tag"]) == (sample.agent_name, sample.target_tag)
        n = len(row["input_ids"])
        assert len(row["attention_mask"]) == len(row["labels"]) == len(row["old_logprobs"]) == n
        assert row["attention_mask"] == [1] * n
        assert row["labels"] == [
            t if m else IGNORE_INDEX for t, m in zip(row["input_ids"], row["action_mask"], strict=True)
        ]


def test_excluded_episodes_are_counted_with_their_reasons(train_run: tuple[Path, list[Sample]]) -> None:
    run_dir, _ = train_run
    dataset = build_token_dataset(run_dir)
    assert dataset.stats.episodes == 2 * GROUP_SIZE
    assert dataset.stats.episodes_excluded == {"status:failed": 2, "no_reward": 2}
    assert dataset.stats.calls_skipped["episode_excluded"] == 2 * 1 + 2 * 2  # the crashed ones called once
    summary = dataset.summary()
    assert "from 4 of 8 episodes" in summary
    assert (
        "episodes excluded: 2 no_reward (the workflow returned no reward and no judger gave one), 2 status:failed"
        in summary
    )


def test_a_debug_jsonl_gives_the_same_rows_as_the_store(
    train_run: tuple[Path, list[Sample]], tmp_path: Path
) -> None:
    run_dir, _ = train_run
    store = SqliteStore(run_dir / "ajet.sqlite")
    try:
        exported = tmp_path / "trajectories.jsonl"
        store.export_jsonl(exported)  # what `ajet debug --out` writes
        from_store = tokenize_trajectories(store, advantage_estimator="rloo")
    finally:
        store.close()
    assert tokenize_trajectories(exported, advantage_estimator="rloo") == from_store
    assert tokenize_trajectories(run_dir) == from_store
    grpo = tokenize_trajectories(exported)  # a bare file has no config: the default estimator
    assert [r["input_ids"] for r in grpo] == [r["input_ids"] for r in from_store]
    # a store file beside the user's own config.yaml (not a train run's saved one): read, default estimator
    copy = tmp_path / "ajet.sqlite"
    copy.write_bytes((run_dir / "ajet.sqlite").read_bytes())
    (tmp_path / "config.yaml").write_text("workflow: flow.py:Flow\n")
    assert build_token_dataset(copy).advantage_estimator == "grpo"
    assert tokenize_trajectories(copy) == grpo


def test_labels_give_the_hugging_face_loss_over_the_generated_tokens(
    train_run: tuple[Path, list[Sample]],
) -> None:
    """A causal LM given `labels` shifts them itself: its loss is the mean negative log-prob of exactly the
    tokens `action_mask` marks, the ones the engine sampled (temperature 1, the weights before the update)."""
    run_dir, _ = train_run
    model, _ = build_tiny_model(seed=0)  # the weights tiny_dir was saved from
    for row in tokenize_trajectories(run_dir)[:3]:
        with torch.no_grad():
            loss = model(
                input_ids=torch.tensor([row["input_ids"]]),
                attention_mask=torch.tensor([row["attention_mask"]]),
                labels=torch.tensor([row["labels"]]),
            ).loss
        generated = [lp for lp, m in zip(row["old_logprobs"], row["action_mask"], strict=True) if m]
        assert loss.item() == pytest.approx(-sum(generated) / len(generated), abs=1e-3)


def test_skip_zero_advantage_leaves_out_what_the_trainer_would(train_run: tuple[Path, list[Sample]]) -> None:
    run_dir, trained = train_run
    dataset = build_token_dataset(run_dir, skip_zero_advantage=True)
    assert [r["episode_id"] for r in dataset.rows] == [s.episode_id for s in trained if s.advantage != 0.0]
    assert dataset.skipped_zero_advantage == sum(s.advantage == 0.0 for s in trained)


def test_trajectories_end_with_the_final_reply(train_run: tuple[Path, list[Sample]]) -> None:
    run_dir, _ = train_run
    by_episode = {t["episode_id"]: t for t in trajectories(run_dir)}
    assert len(by_episode) == 2 * GROUP_SIZE  # failed episodes are kept for reading, with their status
    ok = [t for t in by_episode.values() if t["status"] == "ok"]
    for trajectory in ok:
        roles = [m["role"] for m in trajectory["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]


def test_cli_writes_parquet_and_jsonl_that_read_back(
    train_run: tuple[Path, list[Sample]], tmp_path: Path
) -> None:
    run_dir, _ = train_run
    expected = tokenize_trajectories(run_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", str(run_dir), "--out", str(tmp_path / "data.parquet")])
    assert result.exit_code == 0, result.output
    assert (
        "episodes excluded: 2 no_reward (the workflow returned no reward and no judger gave one), 2 status:failed"
        in result.output
    )
    assert f"wrote {len(expected)} samples" in result.output
    assert pq.read_table(tmp_path / "data.parquet").to_pylist() == expected
    result = runner.invoke(app, ["tokenize", str(run_dir), "--out", str(tmp_path / "data.jsonl")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "data.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-run", "--out", "d.parquet"], "missing-run does not exist"),
        (["RUN", "--out", "d.csv"], "write to a .parquet or a .jsonl file"),
        (
            ["RUN", "--out", "d.jsonl", "--advantage-estimator", "grpoo"],
            "unknown advantage estimator 'grpoo'",
        ),
        (["RUN", "--out", "d.jsonl", "--run-id", "nope"], "run_id 'nope': no episodes"),
    ],
)
def test_cli_explains_bad_input_in_one_line(
    train_run: tuple[Path, list[Sample]], tmp_path: Path, args: list[str], message: str
) -> None:
    run_dir, _ = train_run
    args = [str(run_dir) if a == "RUN" else str(tmp_path / a) if a.startswith("d.") else a for a in args]
    result = CliRunner().invoke(app, ["tokenize", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_run_kept_in_memory_says_there_is_nothing_on_disk(tmp_path: Path) -> None:
    save_run_config(
        tmp_path, parse_config({"workflow": "flow.py:Flow", "store": "memory"}, base_dir=tmp_path)
    )
    with pytest.raises(TokenDatasetError, match="kept its episodes in memory"):
        tokenize_trajectories(tmp_path)


def test_a_file_that_is_not_a_recording_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "trajectories.jsonl"
    bad.write_text('{"messages": []}\n')
    with pytest.raises(TokenDatasetError, match=r"trajectories.jsonl:1: not a recorded episode"):
        tokenize_trajectories(bad)
    with pytest.raises(TokenDatasetError, match="no samples to write"):
        write_token_dataset([], tmp_path / "empty.parquet")
