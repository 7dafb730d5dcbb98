"""How `ajet view`'s pages scale with the size of a run: each page's server time on a run of 10,000 episodes
against one of 100, and the ratio (a page that reads only what it shows stays near 1).

    python benchmarks/viewer_pages.py [--small 100] [--large 10000] [--repeat 20]

Each run is a run directory written as `ajet train` writes it, its SQLite store filled directly: every episode
with one call of ~300 tokens and its trained sample, 8 episodes a step (so 1,250 steps of metrics for 10,000),
every 50th failed with a traceback, 2 roles. Pages are requested in-process (Starlette's TestClient: no socket),
the median of --repeat requests after one warm-up; the tokenizer is left out (ids shown), so the episode page
measures the store and the rendering, not a tokenizer load.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from ajet.core.store import SqliteStore  # noqa: E402
from ajet.core.store.records import RunRecord, SampleRecord  # noqa: E402
from ajet.core.types import Episode, EpisodeStatus, LabeledTask, LlmCall  # noqa: E402

PER_STEP = 8


def make_run(root: Path, name: str, episodes: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    run_dir, run_id = root / name, f"run-{name}"
    run_dir.mkdir(parents=True)
    config = {"name": name, "model": {"path": "no/tokenizer/here"}, "train": {"steps": episodes // PER_STEP}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run.json").write_text(json.dumps({"base_dir": str(root), "run_id": run_id}))
    with (run_dir / "metrics.jsonl").open("w") as out:
        for step in range(1, episodes // PER_STEP + 1):
            row = {
                "step": step,
                "time": float(step),
                "rollout/reward_mean": rng.random(),
                "train/loss": rng.random(),
            }
            if step % 10 == 0:
                row["val/success_rate"] = rng.random()
            out.write(json.dumps(row) + "\n")
    store = SqliteStore(run_dir / "ajet.sqlite")
    store.put_run(RunRecord(run_id=run_id, name=name, status="running", step=episodes // PER_STEP))
    samples = []
    for index in range(episodes):
        failed = index % 50 == 49
        episode = Episode(
            episode_id=f"ep-{index:06d}",
            run_id=run_id,
            task=LabeledTask(task_id=f"t{index // 4}", main_query=f"question {index}"),
            group_id=f"g{index // 4}",
            repeat_index=index % 4,
            status=EpisodeStatus.FAILED if failed else EpisodeStatus.OK,
            reward=None if failed else rng.random(),
            error="RuntimeError: tool crashed" if failed else None,
            traceback="Traceback (most recent call last):\n  ...\nRuntimeError: tool crashed"
            if failed
            else None,
            phase="train",
            step=1 + index // PER_STEP,
        )
        store.add_episode(episode)
        prompt = [rng.randrange(50_000) for _ in range(200)]
        completion = [rng.randrange(50_000) for _ in range(100)]
        call = LlmCall(
            episode_id=episode.episode_id,
            agent_name="solver" if index % 2 else "critic",
            target_tag="solver" if index % 2 else "critic",
            messages=[{"role": "user", "content": f"question {index}"}],
            prompt_ids=prompt,
            completion_ids=completion,
            logprobs=[-rng.random() for _ in completion],
            finish_reason="stop",
            response={"content": "an answer"},
        )
        store.append_call(call)
        if not failed:
            samples.append(
                SampleRecord(
                    run_id=run_id,
                    step=episode.step or 0,
                    episode_id=episode.episode_id,
                    agent_name=call.agent_name,
                    target_tag=call.target_tag,
                    call_ids=[call.call_id],
                    input_ids=prompt + completion,
                    loss_mask=[0] * len(prompt) + [1] * len(completion),
                    old_logprobs=[0.0] * len(prompt) + list(call.logprobs or []),
                    advantage=rng.gauss(0, 1),
                    reward=episode.reward or 0.0,
                )
            )
        if len(samples) >= 500:
            store.add_samples(samples)
            samples = []
    store.add_samples(samples)
    store.close()
    return run_dir


def time_page(client: object, path: str, repeat: int) -> float:
    response = client.get(path)  # type: ignore[attr-defined]
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def pages(episodes: int) -> list[tuple[str, str]]:
    last_page = (episodes + 49) // 50
    middle = episodes // 2
    return [
        ("runs page", "/"),
        ("run page", "/runs/{name}"),
        ("episode table", "/runs/{name}/episodes"),
        ("table, last page", f"/runs/{{name}}/episodes?page={last_page}"),
        ("table, status filter", "/runs/{name}/episodes?status=failed"),
        ("table, step + reward", f"/runs/{{name}}/episodes?step={middle // PER_STEP}&reward_min=0.5"),
        ("table, role filter", "/runs/{name}/episodes?role=solver"),
        ("one episode", f"/runs/{{name}}/episodes/ep-{middle:06d}"),
        ("curves JSON", "/api/curves?run={name}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from starlette.testclient import TestClient

    from ajet.viewer import create_app

    with tempfile.TemporaryDirectory() as tmp:
        results: dict[int, list[float]] = {}
        for size in (args.small, args.large):
            started = time.perf_counter()
            root = Path(tmp) / f"runs-{size}"
            make_run(root, f"run{size}", size)
            print(f"wrote a run of {size} episodes in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            with TestClient(create_app([root])) as client:
                results[size] = [
                    time_page(client, path.format(name=f"run{size}"), args.repeat) for _, path in pages(size)
                ]
        print(f"{'page':<24}{f'{args.small} ep. ms':>14}{f'{args.large} ep. ms':>16}{'ratio':>8}")
        for index, (label, _) in enumerate(pages(args.large)):
            small, large = results[args.small][index], results[args.large][index]
            print(f"{label:<24}{small:>14.1f}{large:>16.1f}{large / small:>8.2f}")


if __name__ == "__main__":
    main()
