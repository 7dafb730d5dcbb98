"""What the seeds' code uses but does not define (`system_prompt`, `FinalResult`, `extract_final_answer`,
`get_official_agent_prompt`, `werewolves_game`, `BadGuyException`, loguru's `logger`), written here so that the
seed workflows beside this file can keep the seeds' code as it is. Loaded as a sibling module: ajet makes a
workflow file's directory importable.

`werewolves_game(players, roles)` plays a short game (one night and one vote, no discussion) with the rules of
`examples/werewolves/werewolves_game.py`, seating the players in the seed's own shuffled order. It returns
whether the village won (a draw counts as a werewolf win, as the seed's reward reads a bool). The last game's
result is put in `GAME`'s box when a test wrapper set one, so that a test can check the reward against the
winner without changing the seed's code.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ajet import LabeledTask

sys.path.append(str(Path(__file__).parents[3] / "examples" / "werewolves"))
from werewolves_game import Game, GameResult, Player, Role, Team, play

MAX_ROUNDS = 1
DISCUSSION = False
GAME: ContextVar[dict[str, Any] | None] = ContextVar("seed_werewolves_game", default=None)

system_prompt = "You are a careful math assistant. Solve the problem and give the final answer as a number."


class FinalResult(BaseModel):
    result: float = Field(description="the final answer, a number")


def extract_final_answer(msg: Any) -> str:
    """The structured answer when the agent gave one, else its text reply."""
    structured = getattr(msg, "metadata", None) or getattr(msg, "structured_output", None) or {}
    return str(structured.get("result", msg.get_text_content() or ""))


def math_tasks(count: int = 2) -> Iterator[LabeledTask]:
    for i in range(count):
        a, b = 3 + i, 4 + 2 * i
        yield LabeledTask(task_id=f"add-{i}", main_query=f"What is {a} + {b}?", label=a + b)


def game_tasks(count: int = 2) -> Iterator[LabeledTask]:
    """The AgentJet seed reads `workflow_task.task.metadata["random_number"]` to seat the players."""
    for i in range(count):
        yield LabeledTask(
            task_id=f"game-{i}", main_query="Play werewolves.", metadata={"random_number": 7 + i}
        )


def get_official_agent_prompt(name: str) -> str:
    return (
        f"You are {name} in a game of werewolves with nine players, Player1 to Player9. The moderator tells you "
        "your role. Answer in one short sentence."
    )


class BadGuyException(Exception):
    """A player broke the game (the seed catches it)."""


class _Logger:
    """loguru's `logger.warning(...)` and `logger.bind(...).exception(...)`, on the standard logging module."""

    def __init__(self) -> None:
        self._log = logging.getLogger("seed")

    def bind(self, **_: Any) -> _Logger:
        return self

    def warning(self, message: str) -> None:
        self._log.warning(message)

    def exception(self, message: str) -> None:
        self._log.exception(message)


logger = _Logger()


class _AgentScopePlayers:
    """The game's PlayerIO over AgentScope agents: 1.x `ReActAgent` (`await agent(msg)`) or 2.x `Agent`
    (`await agent.reply(msg)`). What the moderator tells a player comes with the next question."""

    def __init__(self, agents: dict[str, Any]) -> None:
        self.agents = agents
        self.notes: dict[str, list[str]] = {name: [] for name in agents}

    def inform(self, name: str, text: str) -> None:
        self.notes[name].append(text)

    async def ask(self, name: str, question: str) -> str:
        content = "\n".join([*self.notes[name], question])
        self.notes[name] = []
        agent = self.agents[name]
        if hasattr(agent, "set_console_output_enabled"):  # 1.x
            from agentscope.message import Msg

            reply = await agent(Msg("moderator", content, "user"))
        else:
            from agentscope.message import UserMsg

            reply = await agent.reply(UserMsg(name="moderator", content=content))
        return reply.get_text_content() or ""


async def werewolves_game(players: Sequence[Any], roles: Sequence[str]) -> bool:
    """Play one short game; True when the village won."""
    game = Game(0, max_rounds=MAX_ROUNDS)
    game.players = [Player(agent.name, Role(role)) for agent, role in zip(players, roles, strict=True)]
    io = _AgentScopePlayers({agent.name: agent for agent in players})
    for player in game.players:  # the role is the moderator's first word to each player
        io.inform(player.name, f"Your role: {player.role.value}.")
    result: GameResult = await play(game, io, discussion=DISCUSSION)
    box = GAME.get()
    if box is not None:
        box["result"] = result
    return result.winner is Team.VILLAGE


def game_metadata(box: dict[str, Any]) -> dict[str, Any]:
    result: GameResult | None = box.get("result")
    if result is None:
        return {"winner": None}
    return {"winner": result.winner.value if result.winner else "draw", "rounds": result.rounds}
