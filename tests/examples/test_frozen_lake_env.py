"""The FrozenLake environment in examples/frozen_lake/frozen_lake_env.py: maps from a seed are always solvable,
moves, walls, holes, the goal, slipperiness, and reproducible task splits."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import pytest

from ajet.core.tasks import import_object

ENV_FILE = Path(__file__).parents[2] / "examples" / "frozen_lake" / "frozen_lake_env.py"

MAP = ["SFFH", "FHFF", "FFFH", "HFFG"]


@pytest.fixture(scope="module")
def env() -> ModuleType:
    # loaded the way ajet loads a file the config names
    module = inspect.getmodule(import_object(f"{ENV_FILE}:FrozenLake"))
    assert module is not None
    return module


def test_generated_maps_are_solvable_and_reproducible(env: ModuleType) -> None:
    for seed in range(300):
        rows = env.generate_map(seed, hole_prob=0.4)
        env.validate_map(rows)
        assert len(rows) == 4 and all(len(row) == 4 for row in rows)
        assert env.shortest_path(rows) is not None
        assert rows == env.generate_map(seed, hole_prob=0.4)
    assert len({tuple(env.generate_map(seed)) for seed in range(50)}) > 40
    for seed in range(100):
        path = env.shortest_path(env.generate_map(seed, size=5, max_path=3))
        assert path is not None and 1 <= path <= 3


def test_shortest_path_goes_around_holes_and_sees_walls(env: ModuleType) -> None:
    assert env.shortest_path(MAP) == 6
    assert env.shortest_path(["SH", "HG"]) is None and env.solve(["SH", "HG"]) is None
    assert env.solve(["SHG", "FHF", "FFF"]) == ["down", "down", "right", "right", "up", "up"]


def test_following_the_solution_reaches_the_goal(env: ModuleType) -> None:
    for seed in range(100):
        rows = env.generate_map(seed, hole_prob=0.3)
        lake = env.FrozenLake(rows)
        results = [lake.step(direction) for direction in env.solve(rows)]
        assert [r.done for r in results] == [False] * (len(results) - 1) + [True]
        assert results[-1].reward == 1.0 and lake.reward == 1.0


def test_moves_edges_and_reaching_the_goal(env: ModuleType) -> None:
    lake = env.FrozenLake(MAP)
    assert lake.position == (0, 0)
    edge = lake.step("up")
    assert lake.position == (0, 0) and not edge.done and "edge" in edge.observation
    assert lake.step("left").observation.startswith("You hit the edge")
    first = lake.step("RIGHT ")  # case and spaces do not matter
    assert lake.position == (0, 1) and first.reward == 0.0 and not first.done
    assert first.observation.startswith("You moved right.\nS P F H\nF H F F\n")
    assert first.observation.endswith("You (P) are at row 0, column 1.")
    for direction in ("right", "down", "down", "down"):
        result = lake.step(direction)
    assert lake.position == (3, 2) and not result.done
    goal = lake.step("right")
    assert goal.reward == 1.0 and goal.done and lake.reward == 1.0 and "goal" in goal.observation
    assert lake.moves == 8  # edge bumps count as moves
    after = lake.step("left")
    assert after.done and after.reward == 0.0 and lake.position == (3, 3)


def test_a_hole_ends_the_episode_without_reward(env: ModuleType) -> None:
    lake = env.FrozenLake(MAP)
    lake.step("right")
    hole = lake.step("down")
    assert hole.done and hole.reward == 0.0 and lake.reward == 0.0 and "hole" in hole.observation
    assert lake.step("up").observation == "The episode is over."


@pytest.mark.parametrize("direction", ["north", "", "leftt", None, 3])
def test_an_unknown_direction_changes_nothing(env: ModuleType, direction: object) -> None:
    lake = env.FrozenLake(MAP)
    result = lake.step(direction)  # type: ignore[arg-type]
    assert result.observation.startswith(f"Unknown direction {direction!r}; use left, right, up or down.")
    assert not result.done and lake.position == (0, 0) and lake.moves == 0


def test_slippery_moves_go_sideways_sometimes_and_are_seeded(env: ModuleType) -> None:
    def first_move(seed: int) -> tuple[int, int]:
        lake = env.FrozenLake(["FFF", "FSF", "FFG"], slippery=True, seed=seed)
        lake.step("up")
        return lake.position

    ends = [first_move(seed) for seed in range(40)]
    assert ends == [first_move(seed) for seed in range(40)]
    assert set(ends) == {(0, 1), (1, 0), (1, 2)}  # up, or either side; never down
    assert 5 <= ends.count((0, 1)) <= 25
    assert env.FrozenLake(MAP).slippery is False


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "non-empty"),
        (["SF", "F"], "equal length"),
        (["SX", "FG"], "unknown tiles"),
        (["SF", "FF"], "exactly one 'G'"),
        (["SS", "FG"], "exactly one 'S'"),
    ],
)
def test_bad_maps_are_refused(env: ModuleType, rows: list[str], message: str) -> None:
    with pytest.raises(env.MapError, match=message):
        env.FrozenLake(rows)


def test_tasks_are_reproducible_disjoint_and_reachable(env: ModuleType) -> None:
    train = list(env.frozen_lake_tasks("train", train_size=200, val_size=30, seed=3))
    val = list(env.frozen_lake_tasks("val", train_size=200, val_size=30, seed=3))
    assert len(train) == 200 and len(val) == 30
    again = list(env.frozen_lake_tasks("train", train_size=200, val_size=30, seed=3))
    assert [t.model_dump() for t in train] == [t.model_dump() for t in again]
    assert not {tuple(t.metadata["map"]) for t in train} & {tuple(t.metadata["map"]) for t in val}
    for task in train + val:
        rows = task.metadata["map"]
        assert task.metadata["shortest_path"] == env.shortest_path(rows) and 1 <= env.shortest_path(rows) <= 4
        assert task.main_query == env.FrozenLake(rows).describe()
    with pytest.raises(ValueError, match="split must be"):
        list(env.frozen_lake_tasks("test"))
