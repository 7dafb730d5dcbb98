"""`ajet eval` as a user runs it, on the tiny random model: the JSON file and the stored episodes agree with
each other and with the estimator, two models side by side (the same weights twice get the same samples, since
every model samples with the same seeds), a LoRA run's checkpoint, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajet.core.store import SqliteStore
from ajet.eval.passk import pass_at_k
from ajet.trainer.run_files import load_run_id

ROOT = Path(__file__).parents[2]


def ajet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ajet.cli.main", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )


def write_config(tmp_path: Path, tiny_dir: Path, **extra: Any) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    rows = [{"task_id": f"t{i}", "main_query": f"Say something about the number {i}."} for i in range(3)]
    tasks.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = {
        "name": "tiny",
        "workflow": f"{ROOT / 'tests/workflows/parity.py'}:ParityWorkflow",
        "model": {"path": str(tiny_dir)},
        # one episode at a time: a batch of one samples exactly the same tokens for the same seed
        "rollout": {"group_size": 2, "max_concurrency": 1, "sampling": {"max_tokens": 8, "temperature": 1.0}},
        "data": {"train": {"kind": "file", "path": str(tasks)}, "val": {"kind": "file", "path": str(tasks)}},
        "train": {"steps": 1, "tasks_per_step": 2, "lr": 1e-3, "micro_batch_tokens": 256},
        "run_dir": str(tmp_path / "run"),
        "seed": 5,
        **extra,
    }
    data["train"]["logging"] = {"tensorboard": False}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stored_episodes(report: dict[str, Any]) -> list[Any]:
    store = SqliteStore(report["store"])
    try:
        return store.episodes(report["run_id"])
    finally:
        store.close()


def test_eval_of_the_base_model_writes_every_number_and_stores_its_episodes(
    tmp_path: Path, tiny_dir: Path
) -> None:
    config = write_config(tmp_path, tiny_dir)
    out = tmp_path / "eval.json"
    result = ajet("eval", "-c", str(config), "--k", "4", "--output", str(out))
    assert result.returncode == 0, explain(result)
    for k in range(1, 5):
        assert f"pass@{k}" in result.stdout
    results = json.loads(out.read_text())
    assert (results["split"], results["k"], results["tasks"], results["seed"]) == ("val", 4, 3, 5)
    [report] = results["reports"]
    assert report["label"] == "base" and report["source"] == "base" and report["step"] == 0
    assert (report["episodes"], report["ok"], report["failed"], report["timed_out"]) == (12, 12, 0, 0)
    assert report["temperature"] == 1.0  # rollout.sampling.temperature
    assert set(report["pass_at_k"]) == {"1", "2", "3", "4"}

    # the stored episodes are the ones scored; they are in a run directory of their own, in the eval directory
    # beside run_dir, that `ajet view` lists as a run (config.yaml, run.json with the run id, the store)
    model_dir = Path(report["store"]).parent
    assert model_dir.name == "base" and model_dir.parent.name.startswith("eval-tiny-")
    assert report["run_dir"] == str(model_dir)
    assert model_dir.parent.parent == tmp_path and load_run_id(model_dir) == report["run_id"]
    assert yaml.safe_load((model_dir / "config.yaml").read_text())["model"]["path"] == str(tiny_dir)
    episodes = stored_episodes(report)
    assert len(episodes) == 12
    assert all(e.phase == "eval" and e.step == 0 and e.policy_version == 0 for e in episodes)
    store = SqliteStore(report["store"], read_only=True)
    try:  # the viewer lists it as a run of its own
        run = store.get_run(report["run_id"])
    finally:
        store.close()
    assert (run.kind, run.status, run.step) == ("eval", "finished", 0)
    for row in report["per_task"]:
        mine = [e for e in episodes if e.task_id == row["task_id"]]
        assert len(mine) == row["n"] == 4
        assert row["successes"] == sum(bool(e.is_success) for e in mine)
        for k in range(1, 5):
            assert row["pass_at_k"][str(k)] == pytest.approx(pass_at_k(4, row["successes"], k))
    for k in range(1, 5):
        mean = sum(row["pass_at_k"][str(k)] for row in report["per_task"]) / 3
        assert report["pass_at_k"][str(k)] == pytest.approx(mean)
    assert report["success_rate"] == pytest.approx(report["pass_at_k"]["1"])
    assert report["success_rate"] == pytest.approx(sum(bool(e.is_success) for e in episodes) / 12)


@pytest.mark.slow  # a LoRA training step, then three models evaluated: 20 s on 2 idle cores, 80 s on busy ones
def test_base_a_copy_of_it_and_a_lora_run_side_by_side(tmp_path: Path, tiny_dir: Path) -> None:
    config = write_config(tmp_path, tiny_dir, train={"steps": 1, "tasks_per_step": 2, "lr": 1e-2,
                                                      "micro_batch_tokens": 256, "skip_zero_advantage": False,
                                                      "lora": {"enabled": True, "r": 4}})  # fmt: skip
    trained = ajet("train", "-c", str(config))
    assert trained.returncode == 0, explain(trained)
    run_dir = tmp_path / "run"
    result = ajet(
        "eval", "-c", str(config), "--model", "base", "--model", str(tiny_dir), "--run", str(run_dir), "--k", "2"
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    assert "Δ" in result.stdout
    [written] = (run_dir / "eval").glob("eval-*.json")  # the default output of a command with a --run
    results = json.loads(written.read_text())
    base, copy, lora = results["reports"]
    assert [r["source"] for r in results["reports"]] == ["base", "model", "run"]
    assert (lora["step"], lora["run_dir"], lora["label"]) == (1, str(run_dir), "run@1")

    # the same weights under two names, sampled with the same seeds: the same samples, a delta of zero
    assert [r["successes"] for r in base["per_task"]] == [r["successes"] for r in copy["per_task"]]
    assert copy["pass_at_k"] == base["pass_at_k"]
    delta_copy, delta_lora = results["deltas"]
    assert delta_copy["baseline"] == "base" and all(v == 0 for v in delta_copy["pass_at_k"].values())
    assert delta_lora["success_rate"] == pytest.approx(lora["success_rate"] - base["success_rate"])
    replies = [[e.metadata["answer"] for e in stored_episodes(r)] for r in (base, copy)]
    assert replies[0] == replies[1]

    # the run's episodes went into the run's own store, beside its training episodes
    assert lora["store"] == str(run_dir / "ajet.sqlite")
    assert lora["run_id"] == load_run_id(run_dir)
    episodes = stored_episodes(lora)
    evaluated = [e for e in episodes if e.phase == "eval"]
    assert len(evaluated) == 6 and all(e.status == "ok" and e.step == 1 for e in evaluated)
    assert all(
        e.policy_version == 1 for e in evaluated
    )  # served as the version the checkpoint was trained to
    assert {e.phase for e in episodes} == {"train", "val", "eval"}  # beside the run's training
    # the LoRA-merged model is another model: at lr 1e-2 its replies differ from the base model's
    assert [e.metadata["answer"] for e in evaluated] != replies[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "test"], "--split test: unknown split; the config's data section has train, val"),
        (["--k", "0"], "--k 0: K is the number of samples per task and must be at least 1"),
        (["--model", "/no/such/model"], "--model /no/such/model: no such file or directory"),
        (["--run", "{tmp}/untrained"], "the run has no checkpoint yet"),
        (["--run", "{tmp}/nowhere"], "--run {tmp}/nowhere: no such directory"),
    ],
)
def test_a_mistake_is_one_line_that_says_what_to_do(
    tmp_path: Path, tiny_dir: Path, args: list[str], message: str
) -> None:
    config = write_config(tmp_path, tiny_dir)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.yaml").write_text(config.read_text())
    (untrained / "run.json").write_text(json.dumps({"base_dir": str(tmp_path)}))
    result = ajet("eval", "-c", str(config), *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, explain(result)
    assert message.format(tmp=tmp_path) in " ".join(result.stdout.split()), explain(result)
    assert "Traceback" not in result.stdout + result.stderr
