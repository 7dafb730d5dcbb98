"""FrozenLake, written here in pure Python (no gym): a small grid of S (start), F (frozen), H (hole), G (goal).

The agent starts on S and moves left, right, up or down. Stepping on H ends the episode with reward 0,
reaching G ends it with reward 1, moving into the edge of the grid leaves the agent where it is. With
`slippery=True` a move goes the intended way a third of the time and to either side otherwise (as in gym's
FrozenLake); it is off by default. Maps come from a seed and always have a path from S to G.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ajet import LabeledTask

DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
# the two directions at right angles to each one, where a slippery move may go instead
_SIDEWAYS: dict[str, tuple[str, str]] = {
    "left": ("up", "down"),
    "right": ("up", "down"),
    "up": ("left", "right"),
    "down": ("left", "right"),
}
TILES = frozenset("SFHG")

Position = tuple[int, int]


class MapError(ValueError):
    """A map that is not a FrozenLake map (the message says what is wrong)."""


def find_tile(rows: list[str], tile: str) -> Position:
    for r, row in enumerate(rows):
        if tile in row:
            return r, row.index(tile)
    raise MapError(f"the map has no {tile!r} tile")


def validate_map(rows: list[str]) -> None:
    if not rows or any(len(row) != len(rows[0]) for row in rows) or not rows[0]:
        raise MapError(f"a map is a non-empty list of rows of equal length, got {rows!r}")
    bad = {c for row in rows for c in row} - TILES
    if bad:
        raise MapError(f"unknown tiles {sorted(bad)}; a map uses only S, F, H and G")
    for tile in "SG":
        if sum(row.count(tile) for row in rows) != 1:
            raise MapError(f"a map has exactly one {tile!r} tile: {rows!r}")


def solve(rows: list[str]) -> list[str] | None:
    """A shortest list of moves from S to G that avoids holes (None when G cannot be reached)."""
    start, goal = find_tile(rows, "S"), find_tile(rows, "G")
    came_from: dict[Position, tuple[Position, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            moves: list[str] = []
            step = came_from[here]
            while step is not None:
                here, direction = step
                moves.append(direction)
                step = came_from[here]
            return moves[::-1]
        for direction, (dr, dc) in DIRECTIONS.items():
            r, c = here[0] + dr, here[1] + dc
            if 0 <= r < len(rows) and 0 <= c < len(rows[0]) and rows[r][c] != "H" and (r, c) not in came_from:
                came_from[(r, c)] = (here, direction)
                queue.append((r, c))
    return None


def shortest_path(rows: list[str]) -> int | None:
    """The fewest moves from S to G that avoid holes (None when G cannot be reached)."""
    moves = solve(rows)
    return None if moves is None else len(moves)


def generate_map(seed: int, size: int = 4, hole_prob: float = 0.2, max_path: int | None = None) -> list[str]:
    """A random `size` x `size` map from `seed`: S and G on distinct random tiles, each other tile a hole with
    probability `hole_prob`, redrawn until G is reachable (within `max_path` moves, when given)."""
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    if not 0 <= hole_prob < 1:
        raise ValueError(f"hole_prob must be in [0, 1), got {hole_prob}")
    if max_path is not None and max_path < 1:
        raise ValueError(f"max_path must be at least 1, got {max_path}")
    rng = random.Random(seed)
    cells = [(r, c) for r in range(size) for c in range(size)]
    while True:
        start, goal = rng.sample(cells, 2)
        grid = [["H" if rng.random() < hole_prob else "F" for _ in range(size)] for _ in range(size)]
        grid[start[0]][start[1]] = "S"
        grid[goal[0]][goal[1]] = "G"
        rows = ["".join(row) for row in grid]
        length = shortest_path(rows)
        if length is not None and (max_path is None or length <= max_path):
            return rows


@dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float
    done: bool


class FrozenLake:
    """One episode on one map. `step(direction)` -> StepResult; `render()` draws the grid with the agent."""

    def __init__(self, rows: list[str], slippery: bool = False, seed: int = 0) -> None:
        validate_map(rows)
        self.rows = list(rows)
        self.slippery = slippery
        self.rng = random.Random(seed)  # only used when slippery
        self.position = find_tile(rows, "S")
        self.done = False
        self.reward = 0.0
        self.moves = 0

    @property
    def tile(self) -> str:
        return self.rows[self.position[0]][self.position[1]]

    def render(self) -> str:
        """The grid, one row per line, with the agent drawn as P (the map's own tile is under it)."""
        lines = []
        for r, row in enumerate(self.rows):
            cells = ["P" if (r, c) == self.position else tile for c, tile in enumerate(row)]
            lines.append(" ".join(cells))
        return "\n".join(lines)

    def describe(self) -> str:
        row, col = self.position
        return f"{self.render()}\nYou (P) are at row {row}, column {col}."

    def step(self, direction: str) -> StepResult:
        """Move one tile. An unknown direction, or a move after the episode ended, changes nothing and says
        why in the observation (a weak agent's mistakes are part of its episode, not errors)."""
        if self.done:
            return StepResult("The episode is over.", 0.0, True)
        key = direction.strip().lower() if isinstance(direction, str) else ""
        if key not in DIRECTIONS:
            return StepResult(
                f"Unknown direction {direction!r}; use left, right, up or down.\n{self.describe()}",
                0.0,
                False,
            )
        self.moves += 1
        actual = key
        if self.slippery:
            actual = self.rng.choice((key, *_SIDEWAYS[key]))
        dr, dc = DIRECTIONS[actual]
        r, c = self.position[0] + dr, self.position[1] + dc
        slipped = f"You slipped and moved {actual}. " if actual != key else ""
        if not (0 <= r < len(self.rows) and 0 <= c < len(self.rows[0])):
            return StepResult(f"{slipped}You hit the edge and stay in place.\n{self.describe()}", 0.0, False)
        self.position = (r, c)
        if self.tile == "H":
            self.done = True
            return StepResult(f"{slipped}You fell into a hole. Game over.\n{self.describe()}", 0.0, True)
        if self.tile == "G":
            self.done, self.reward = True, 1.0
            return StepResult(f"{slipped}You reached the goal!\n{self.describe()}", 1.0, True)
        return StepResult(f"{slipped}You moved {actual}.\n{self.describe()}", 0.0, False)


def frozen_lake_tasks(
    split: str,
    train_size: int = 1000,
    val_size: int = 64,
    seed: int = 0,
    size: int = 4,
    hole_prob: float = 0.2,
    max_path: int | None = 4,
) -> Iterator[LabeledTask]:
    """Maps from one seeded stream: the first `val_size` distinct maps are the validation split, the next
    `train_size` the training split, so the splits never share a map and the same arguments always give the
    same tasks. `max_path` keeps the goal within that many moves (a few turns suffice). Each task's metadata
    holds the map rows and the length of its shortest path."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    wanted = val_size if split == "val" else val_size + train_size
    draws = 0
    while len(seen) < wanted:
        draws += 1
        if draws > 100 * wanted:  # settings that allow fewer distinct maps than asked for
            raise ValueError(
                f"only {len(seen)} distinct maps found for {wanted} wanted; change size or max_path"
            )
        rows = generate_map(rng.getrandbits(32), size=size, hole_prob=hole_prob, max_path=max_path)
        if tuple(rows) in seen:
            continue
        seen.add(tuple(rows))
        index = len(seen) - 1 if split == "val" else len(seen) - 1 - val_size
        if index < 0:
            continue  # a validation map, skipped in the training split
        yield LabeledTask(
            task_id=f"{split}-{index}",
            main_query=FrozenLake(rows).describe(),
            metadata={"map": rows, "shortest_path": shortest_path(rows)},
        )
