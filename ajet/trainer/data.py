"""The data cursor: which training tasks come next. Each epoch is a fresh shuffle from (seed, epoch), so the
order is reproducible and the cursor's state is two integers, saved in every checkpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class TaskCursor:
    size: int
    seed: int = 0
    epoch: int = 0
    index: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("no training tasks: data.train produced an empty list")

    def order(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next_indices(self, count: int) -> list[int]:
        """The next `count` task indices, continuing into the next epoch's shuffle when this one runs out."""
        out: list[int] = []
        while len(out) < count:
            if self.index >= self.size:
                self.epoch, self.index = self.epoch + 1, 0
            order = self.order(self.epoch)
            take = min(count - len(out), self.size - self.index)
            out.extend(order[self.index : self.index + take])
            self.index += take
        return out

    def take(self, items: list[T], count: int) -> list[T]:
        return [items[i] for i in self.next_indices(count)]

    def state_dict(self) -> dict[str, int]:
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != self.size:
            raise ValueError(
                f"the checkpoint was made with {state['size']} training tasks, the data now has {self.size}; "
                "resume with the same data"
            )
        self.seed, self.epoch, self.index = state["seed"], state["epoch"], state["index"]
